// The bodies of PUT /snapshot/create and PUT /snapshot/load: Firecracker's
// fields, defaults and serde's messages (request/snapshot.rs,
// vmm_config/snapshot.rs), with hvz's strictness.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "api/config_json.hpp"
#include "api/json_document.hpp"

namespace hvz::api {
namespace {

Expected<config::SnapshotCreate> create(const std::string& text) {
  auto doc = JsonDocument::parse(text);
  if (!doc) return tl::unexpected(doc.error());
  return parse_snapshot_create(doc->root(), "", &*doc);
}

Expected<SnapshotLoadBody> load(const std::string& text) {
  auto doc = JsonDocument::parse(text);
  if (!doc) return tl::unexpected(doc.error());
  return parse_snapshot_load(doc->root(), "", &*doc);
}

template <typename T>
std::string error_of(const Expected<T>& result) {
  return result ? std::string("(parsed)") : result.error().message();
}

TEST(SnapshotJson, CreateFullByDefault) {
  auto c = create(R"({"snapshot_path": "vm.snap", "mem_file_path": "vm.mem"})");
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(*c, (config::SnapshotCreate{config::SnapshotType::kFull, "vm.snap", "vm.mem"}));
  c = create(R"({"snapshot_type": "Diff", "snapshot_path": "s", "mem_file_path": "m"})");
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->type, config::SnapshotType::kDiff);
  c = create(R"({"snapshot_type": "Full", "snapshot_path": "s", "mem_file_path": "m"})");
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->type, config::SnapshotType::kFull);
}

TEST(SnapshotJson, CreateRefusesWhatSerdeRefuses) {
  EXPECT_EQ(error_of(create(R"({"snapshot_path": "s"})")),
            "missing field `mem_file_path` at line 1 column 22");
  EXPECT_EQ(error_of(create(R"({"mem_file_path": "m"})")),
            "missing field `snapshot_path` at line 1 column 22");
  EXPECT_EQ(error_of(create(R"({"snapshot_path": "s", "mem_file_path": "m", "version": "1.0"})")),
            "unknown field `version`, expected one of `snapshot_type`, `snapshot_path`, "
            "`mem_file_path` at line 1 column 54");
  EXPECT_EQ(
      error_of(
          create(R"({"snapshot_type": "Partial", "snapshot_path": "s", "mem_file_path": "m"})")),
      "unknown variant `Partial`, expected `Diff` or `Full` at line 1 column 27 (snapshot_type)");
  // snapshot_type is defaulted, not an Option: null is a wrong type.
  EXPECT_EQ(
      error_of(create(R"({"snapshot_type": null, "snapshot_path": "s", "mem_file_path": "m"})")),
      "invalid type: null, expected `Diff` or `Full` at line 1 column 22 (snapshot_type)");
  EXPECT_EQ(error_of(create(R"({"snapshot_path": 5, "mem_file_path": "m"})")),
            "invalid type: integer `5`, expected path string at line 1 column 19 (snapshot_path)");
  EXPECT_EQ(error_of(create(R"({"snapshot_path": "s", "mem_file_path": null})")),
            "invalid type: null, expected path string at line 1 column 44 (mem_file_path)");
  EXPECT_EQ(error_of(create("[]")),
            "invalid type: sequence, expected struct CreateSnapshotParams at line 1 column 2");
}

TEST(SnapshotJson, LoadWithMemBackend) {
  auto l = load(R"({"snapshot_path": "vm.snap",
                    "mem_backend": {"backend_path": "uffd.sock", "backend_type": "Uffd"}})");
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_FALSE(l->deprecated);
  EXPECT_EQ(l->load.snapshot_path, "vm.snap");
  EXPECT_EQ(l->load.mem_backend_type, config::MemBackendType::kUffd);
  EXPECT_EQ(l->load.mem_backend_path, "uffd.sock");
  // Firecracker's defaults.
  EXPECT_FALSE(l->load.track_dirty_pages);
  EXPECT_FALSE(l->load.resume_vm);
  EXPECT_TRUE(l->load.network_overrides.empty());

  l = load(R"({"snapshot_path": "s", "mem_backend": {"backend_type": "File", "backend_path": "m"},
               "track_dirty_pages": true, "resume_vm": true, "mem_file_path": null,
               "network_overrides": [{"iface_id": "eth0", "host_dev_name": "vmtap2"},
                                     {"iface_id": "eth1", "host_dev_name": "vmtap3"}],
               "vsock_override": null, "clock_realtime": false, "huge_pages": "Snapshot"})");
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_FALSE(l->deprecated);
  EXPECT_EQ(l->load.mem_backend_type, config::MemBackendType::kFile);
  EXPECT_EQ(l->load.mem_backend_path, "m");
  EXPECT_TRUE(l->load.track_dirty_pages);
  EXPECT_TRUE(l->load.resume_vm);
  EXPECT_EQ(l->load.network_overrides,
            (std::vector<config::NetworkOverride>{{"eth0", "vmtap2"}, {"eth1", "vmtap3"}}));
}

TEST(SnapshotJson, DeprecatedFieldsStillWork) {
  // mem_file_path: a File backend; the request is flagged deprecated.
  auto l = load(R"({"snapshot_path": "s", "mem_file_path": "vm.mem", "resume_vm": true})");
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_TRUE(l->deprecated);
  EXPECT_EQ(l->load.mem_backend_type, config::MemBackendType::kFile);
  EXPECT_EQ(l->load.mem_backend_path, "vm.mem");
  EXPECT_TRUE(l->load.resume_vm);
  EXPECT_FALSE(l->load.track_dirty_pages);
  // enable_diff_snapshots: tracking, whatever track_dirty_pages says (both
  // turn it on, as Firecracker ORs them); flagged only when true.
  const std::string backend = R"("mem_backend": {"backend_path": "m", "backend_type": "File"})";
  l = load(R"({"snapshot_path": "s", )" + backend + R"(, "enable_diff_snapshots": true})");
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_TRUE(l->deprecated);
  EXPECT_TRUE(l->load.track_dirty_pages);
  l = load(R"({"snapshot_path": "s", )" + backend +
           R"(, "enable_diff_snapshots": true, "track_dirty_pages": false})");
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_TRUE(l->load.track_dirty_pages);
  l = load(R"({"snapshot_path": "s", )" + backend +
           R"(, "enable_diff_snapshots": true, "track_dirty_pages": true})");
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_TRUE(l->load.track_dirty_pages);
  l = load(R"({"snapshot_path": "s", )" + backend + R"(, "enable_diff_snapshots": false})");
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_FALSE(l->deprecated);
  EXPECT_FALSE(l->load.track_dirty_pages);
}

TEST(SnapshotJson, LoadNeedsExactlyOneMemorySource) {
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s"})")),
            "missing field: either `mem_backend` or `mem_file_path` is required");
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s", "mem_file_path": null})")),
            "missing field: either `mem_backend` or `mem_file_path` is required");
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s", "mem_file_path": "m",
                              "mem_backend": {"backend_path": "m", "backend_type": "Uffd"}})")),
            "too many fields: either `mem_backend` or `mem_file_path` exclusively is required");
  // serde's own errors come first.
  EXPECT_EQ(error_of(load(R"({"mem_backend": {"backend_path": "bar", "backend_type": "Uffd"}})")),
            "missing field `snapshot_path` at line 1 column 64");
}

TEST(SnapshotJson, LoadRefusesWhatSerdeRefuses) {
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s", "mem_backend": {"backend_path": "bar"}})")),
            "missing field `backend_type` at line 1 column 61 (mem_backend)");
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s",
                              "mem_backend": {"backend_path": "m", "backend_type": "Disk"}})")),
            "unknown variant `Disk`, expected `File` or `Uffd` at line 2 column 89 "
            "(mem_backend.backend_type)");
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s", "mem_file_path": "m", "resume": true})")),
            "unknown field `resume`, expected one of `snapshot_path`, `mem_file_path`, "
            "`mem_backend`, `enable_diff_snapshots`, `track_dirty_pages`, `resume_vm`, "
            "`network_overrides`, `vsock_override`, `clock_realtime`, `huge_pages` at line 1 "
            "column 53");
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s", "mem_file_path": "m", "resume_vm": null})")),
            "invalid type: null, expected a boolean at line 1 column 62 (resume_vm)");
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s", "mem_file_path": "m",
                              "track_dirty_pages": "yes"})")),
            "invalid type: string \"yes\", expected a boolean at line 2 column 56 "
            "(track_dirty_pages)");
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s", "mem_file_path": "m",
                              "network_overrides": null})")),
            "invalid type: null, expected a sequence at line 2 column 55 (network_overrides)");
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s", "mem_file_path": "m",
                              "network_overrides": [{"iface_id": "eth0"}]})")),
            "missing field `host_dev_name` at line 2 column 72 (network_overrides[0])");
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s", "mem_file_path": "m",
                        "network_overrides": [{"iface_id": "e", "host_dev_name": "t", "x": 1}]})")),
            "unknown field `x`, expected `iface_id` or `host_dev_name` at line 2 column 89 "
            "(network_overrides[0])");
  EXPECT_EQ(error_of(load(R"({"snapshot_path": "s", "mem_file_path": "m",
                              "mem_backend": {"backend_path": "m", "backend_type": "File",
                                              "x": 1}})")),
            "unknown field `x`, expected `backend_path` or `backend_type` at line 3 column 49 "
            "(mem_backend)");
}

TEST(SnapshotJson, LoadRefusesWhatHvzLacks) {
  const std::string head = R"({"snapshot_path": "s", "mem_file_path": "m", )";
  auto l = load(head + R"("vsock_override": {"uds_path": "v.sock"}})");
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code(), Errc::kUnsupported);
  EXPECT_EQ(l.error().message(), "vsock_override: vsock is not supported yet");
  l = load(head + R"("clock_realtime": true})");
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code(), Errc::kUnsupported);
  EXPECT_NE(l.error().message().find("clock_realtime: "), std::string::npos);
  l = load(head + R"("huge_pages": "2M"})");
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code(), Errc::kUnsupported);
  EXPECT_NE(l.error().message().find("huge_pages: "), std::string::npos);
  EXPECT_EQ(error_of(load(head + R"("huge_pages": "1M"})")),
            "unknown variant `1M`, expected one of `Snapshot`, `None`, `Transparent`, `2M` at "
            "line 1 column 63 (huge_pages)");
}

}  // namespace
}  // namespace hvz::api
