// JSON <-> VmConfig in Firecracker's config-file shape ("boot-source",
// "machine-config", …). One mapping for --config-file and, later, the API
// and GET /vm/config. Strict: unknown fields and wrong types are errors that
// name the offending field.
#pragma once

#include <string>
#include <string_view>

#include "vmm/config/vm_config.hpp"

namespace hvz::api {

Expected<config::VmConfig> parse_vm_config(std::string_view json);
std::string vm_config_to_json(const config::VmConfig& config);

}  // namespace hvz::api
