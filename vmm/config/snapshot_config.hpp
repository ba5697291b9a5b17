// The parameters of Firecracker's PUT /snapshot/create and PUT
// /snapshot/load as plain structs (vmm_config/snapshot.rs's
// CreateSnapshotParams and LoadSnapshotParams), shared by the API, which
// reads them from JSON (api/config_json.hpp), and the VMM, which saves or
// restores the VM. validate() checks what needs no file system.
#pragma once

#include <string>
#include <vector>

#include "vmm/core/error.hpp"

namespace hvz::config {

// Full: all of guest memory; Diff: only the pages written since the last
// snapshot (needs dirty page tracking).
enum class SnapshotType { kFull, kDiff };

struct SnapshotCreate {
  SnapshotType type = SnapshotType::kFull;
  std::string snapshot_path;  // the VM's state (vCPUs, devices, ...)
  std::string mem_file_path;  // guest memory
  bool operator==(const SnapshotCreate&) const = default;
};

// How guest memory is filled at load: kFile maps the memory file; kUffd
// hands the memory's userfaultfd to the page-fault handler listening on
// the Unix socket at the backend path.
enum class MemBackendType { kFile, kUffd };

// A restored network interface's TAP device by another name.
struct NetworkOverride {
  std::string iface_id;
  std::string host_dev_name;
  bool operator==(const NetworkOverride&) const = default;
};

struct SnapshotLoad {
  std::string snapshot_path;
  MemBackendType mem_backend_type = MemBackendType::kFile;
  std::string mem_backend_path;
  // KVM dirty page tracking for the restored VM (needed by Diff snapshots).
  bool track_dirty_pages = false;
  // Running after the load; else Paused.
  bool resume_vm = false;
  std::vector<NetworkOverride> network_overrides;
  bool operator==(const SnapshotLoad&) const = default;
};

// Paths not empty; for a load also each override's iface_id a valid id
// (valid_id()) given once, and its host_dev_name 1-15 characters and given
// once. The first problem as a one-line error (Errc::kInvalidArgument).
Expected<void> validate(const SnapshotCreate& create);
Expected<void> validate(const SnapshotLoad& load);

}  // namespace hvz::config
