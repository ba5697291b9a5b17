// VmmAction and VmmResult: what the API thread asks of the VMM thread, the
// one thread that owns the Vm (Firecracker's VmmAction / VmmData). Plain
// data; ActionChannel carries them, VmmLoop executes them.
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "vmm/config/vm_config.hpp"
#include "vmm/core/error.hpp"

namespace hvz::vmm {

// Builds the VM from `config` (validated by the caller) and starts it.
struct StartInstance {
  config::VmConfig config;
};
// Parks every vCPU and device callback / lets them continue.
struct Pause {};
struct Resume {};
// Ctrl-Alt-Del through the i8042 (the guest usually reboots).
struct SendCtrlAltDel {};
// A running drive's new backing file and/or new rate limits. Each value
// set is complete (a PATCH merged with the configuration already, see
// config::merge_rate_limiter) and replaces the device's; unset ones stay.
struct UpdateDrive {
  std::string drive_id;
  std::optional<std::string> path_on_host;
  std::optional<config::RateLimiterConfig> rate_limiter;
};
// A running network interface's new rate limits, complete as above.
struct UpdateNetworkInterface {
  std::string iface_id;
  std::optional<config::RateLimiterConfig> rx_rate_limiter;
  std::optional<config::RateLimiterConfig> tx_rate_limiter;
};

using VmmAction =
    std::variant<StartInstance, Pause, Resume, SendCtrlAltDel, UpdateDrive, UpdateNetworkInterface>;

// The action's name for logs ("StartInstance", …).
const char* action_name(const VmmAction& action);

// The answer: done, or why not (the error's message is what an API client
// reads). No action returns data yet; one that does widens the payload.
using VmmResult = Expected<void>;

}  // namespace hvz::vmm
