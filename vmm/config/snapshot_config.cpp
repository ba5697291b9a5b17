// Checks of the snapshot parameters (see snapshot_config.hpp).
#include "vmm/config/snapshot_config.hpp"

#include "vmm/config/vm_config.hpp"

namespace hvz::config {

namespace {

Expected<void> path_given(const std::string& path, const char* what) {
  if (!path.empty()) return {};
  return make_error(Errc::kInvalidArgument, std::string("no ") + what + " given (empty path)");
}

}  // namespace

Expected<void> validate(const SnapshotCreate& create) {
  if (auto ok = path_given(create.snapshot_path, "snapshot_path"); !ok) return ok;
  return path_given(create.mem_file_path, "mem_file_path");
}

Expected<void> validate(const SnapshotLoad& load) {
  if (auto ok = path_given(load.snapshot_path, "snapshot_path"); !ok) return ok;
  if (auto ok = path_given(load.mem_backend_path, "memory backend path"); !ok) return ok;
  std::vector<InterfaceName> names;
  for (const auto& o : load.network_overrides) names.push_back({o.iface_id, o.host_dev_name});
  if (auto ok = validate_interface_names(names); !ok) {
    return make_error(ok.error().code(), "network_overrides: " + ok.error().message());
  }
  return {};
}

}  // namespace hvz::config
