// Fuzz harness for the JSON configuration mapping (api/config_json.hpp):
// the input as a config file (parse_vm_config), as a request body
// (JsonDocument::parse, the serde-like reader with duplicate-key and depth
// checks) and through every per-route body parser (boot source, machine
// config for PUT and PATCH, drive, network interface, rate limiter,
// logger, metrics, serial, entropy, console, drive and interface updates,
// snapshot create and load, one-field variant bodies) on the document, its members and their
// elements, as request bodies and config-file sections reach them.
// A config file that parses must survive the round trip the header
// promises: the JSON written for it (what GET /vm/config answers) parses
// back into an identical VmConfig, and writing that again gives the same
// text; config::validate and the kernel command line take it too.
//
// Input: the JSON text.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/config_json.hpp"
#include "vmm/config/vm_config.hpp"
#include "vmm/core/fuzz/fuzz_input.hpp"

namespace {

using namespace hvz;
using namespace hvz::api;
using nlohmann::json;

constexpr std::size_t kMaxChildren = 16;

void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "hvz fuzz: invariant broken: %s\n  %s\n", what, detail.c_str());
  std::abort();
}

// Every parser on one value; only crashes (and sanitizer reports) count,
// plus the effective limiter of what parses as a rate limiter.
void parse_all(const json& j, const JsonDocument* doc) {
  const std::string w = "fuzz";
  const config::MachineConfig base{};
  (void)parse_boot_source(j, w, doc);
  (void)parse_machine_config(j, w, nullptr, doc);
  (void)parse_machine_config(j, w, &base, doc);
  (void)parse_drive(j, w, doc);
  (void)parse_network_interface(j, w, doc);
  if (auto r = parse_rate_limiter(j, w, doc)) (void)dump_json(to_json(effective_limiter(*r)));
  (void)parse_logger(j, w, {}, doc);
  (void)parse_metrics(j, w, doc);
  (void)parse_serial(j, w, doc);
  (void)parse_entropy(j, w, doc);
  (void)parse_console(j, w, doc);
  (void)parse_drive_update(j, w, doc);
  (void)parse_network_interface_update(j, w, doc);
  (void)parse_snapshot_create(j, w, doc);
  (void)parse_snapshot_load(j, w, doc);
  (void)parse_variant_body(j, "InstanceActionInfo", "action_type",
                           {"InstanceStart", "SendCtrlAltDel", "FlushMetrics"}, doc);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // The config file.
  auto config = parse_vm_config(text);
  if (config) {
    const std::string written = vm_config_to_json(*config);
    auto again = parse_vm_config(written);
    if (!again) {
      fail("config file", "does not parse back: " + again.error().message() + "\n" + written);
    }
    if (!(*again == *config)) fail("config file", "parses back differently:\n" + written);
    if (vm_config_to_json(*again) != written) {
      fail("config file", "written differently the second time:\n" + written);
    }
    (void)config::validate(*config);
    (void)config::kernel_cmdline(*config);
  }

  // Request bodies and config-file sections.
  auto doc = JsonDocument::parse(text);
  if (!doc) return 0;
  const json& root = doc->root();
  parse_all(root, &*doc);
  std::size_t children = 0;
  if (root.is_structured()) {
    for (const json& child : root) {
      if (++children > kMaxChildren) break;
      parse_all(child, &*doc);
      if (child.is_array()) {
        std::size_t n = 0;
        for (const json& element : child) {
          if (++n > kMaxChildren) break;
          parse_all(element, &*doc);
        }
      }
    }
  }
  return 0;
}
