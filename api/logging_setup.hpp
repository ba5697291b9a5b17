// Firecracker's PUT /logger (and the config file's "logger") applied to the
// log facade: output path, level, show_level, show_log_origin.
#pragma once

#include "vmm/config/vm_config.hpp"
#include "vmm/core/log.hpp"

namespace hvz::api {

// Sends log lines to logger.log_path (appended, or a FIFO; an empty path
// keeps the current output) and sets level and line shape. When the path
// cannot be opened nothing changes and the error names the path.
Expected<void> configure_logging(const config::LoggerConfig& logger);

}  // namespace hvz::api
