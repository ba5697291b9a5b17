// hvz's command line: the flags (CLI11), what they mean as a VmConfig and
// the other settings of a run (Options), and when to stop before running
// (--help, usage errors: OptionsExit). Parsing only reads the config file;
// it changes nothing in the process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "vmm/config/vm_config.hpp"
#include "vmm/core/log.hpp"

namespace hvz::api {

// hvz's exit statuses.
inline constexpr int kExitOk = 0;
inline constexpr int kExitGuestFailure = 1;  // guest crashed, or hvz failed while running
inline constexpr int kExitUsage = 2;         // bad arguments, images or set-up failure

struct Options {
  config::VmConfig config;
  // --config-file or --kernel: the VM starts at once; otherwise the API
  // starts it.
  bool boot_now = false;
  std::string api_sock;  // empty: no API
  std::string instance_id = "anonymous-instance";
  std::size_t max_payload = 51200;
  std::uint64_t output_limit = 0;  // bytes of console output to a regular file; 0: no limit
  log::Level log_level = log::Level::kWarn;
};

// Stop without running: `text` goes to stdout for status 0 (--help), to
// stderr otherwise ("hvz: error: ..." with kExitUsage).
struct OptionsExit {
  int status = kExitOk;
  std::string text;
};

std::variant<Options, OptionsExit> parse_options(int argc, const char* const* argv);

}  // namespace hvz::api
