// configure_logging(): LoggerConfig onto the log facade.
#include "api/logging_setup.hpp"

namespace hvz::api {

Expected<void> configure_logging(const config::LoggerConfig& logger) {
  // The output first: a path that does not open leaves everything as it was.
  if (!logger.log_path.empty()) {
    auto r = log::set_output_path(logger.log_path);
    if (!r) {
      return in_context("logger: ", r.error());
    }
  }
  log::set_level(logger.level);
  log::set_show_level(logger.show_level);
  log::set_show_origin(logger.show_log_origin);
  return {};
}

}  // namespace hvz::api
