// Writes the seeds of snapshot_fuzz into the directory given as the only
// argument (vmm/snapshot/fuzz/corpus/snapshot/): snapshots from the unit
// tests' sample states, small and full, and a few near misses.
#include <cstdio>
#include <string>
#include <vector>

#include "vmm/snapshot/snapshot.hpp"
#include "vmm/snapshot/tests/sample_states.hpp"

using namespace hvz::snapshot;  // NOLINT(google-build-using-namespace)

namespace {

bool write(const std::string& dir, const char* name, const std::vector<std::byte>& bytes) {
  const std::string path = dir + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::perror(path.c_str());
    return false;
  }
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  VmSnapshot minimal = samples::sample_snapshot(1, false);
  minimal.memory.resize(1);
  minimal.vm_config.clear();
  minimal.vcpus[0].tsc_khz.reset();
  VmSnapshot one_each = samples::sample_snapshot(1, true);
  std::get<hvz::virtio::net::NetDeviceState>(one_each.virtio[1].device).mac.reset();
  std::vector<std::byte> truncated = encode_snapshot(minimal);
  truncated.resize(truncated.size() / 2);
  bool ok =
      write(dir, "minimal", encode_snapshot(minimal)) &&
      write(dir, "one-vcpu-every-device", encode_snapshot(one_each)) &&
      write(dir, "two-vcpus-every-device", encode_snapshot(samples::sample_snapshot(2, true))) &&
      write(dir, "truncated", truncated) && write(dir, "header-only", encode_container({}));
  return ok ? 0 : 1;
}
