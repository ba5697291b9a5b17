// Bus: range registration rules and access dispatch.
#include "vmm/core/bus.hpp"

#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace hvz {
namespace {

// Records every access; reads return offset + index so tests can see the
// offset the bus passed.
class RecordingDevice : public BusDevice {
 public:
  struct Access {
    bool write;
    std::uint64_t offset;
    std::vector<std::uint8_t> data;
  };
  void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(offset + i);
    accesses.push_back({false, offset, {data.begin(), data.end()}});
  }
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
    accesses.push_back({true, offset, {data.begin(), data.end()}});
  }
  std::vector<Access> accesses;
};

TEST(Bus, RejectsOverlappingRanges) {
  Bus bus;
  auto a = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.insert(a, 0x100, 0x10));
  EXPECT_FALSE(bus.insert(a, 0x100, 0x10));  // identical
  EXPECT_FALSE(bus.insert(a, 0x10f, 0x1));   // last byte
  EXPECT_FALSE(bus.insert(a, 0xf0, 0x11));   // reaches the first byte
  EXPECT_FALSE(bus.insert(a, 0x0, 0x1000));  // covers it
  EXPECT_FALSE(bus.insert(a, 0x104, 0x2));   // inside it
  auto err = bus.insert(a, 0x108, 0x100);
  ASSERT_FALSE(err);
  EXPECT_EQ(err.error().code(), Errc::kBusy);
}

TEST(Bus, AcceptsAdjacentRanges) {
  Bus bus;
  auto a = std::make_shared<RecordingDevice>();
  EXPECT_TRUE(bus.insert(a, 0x100, 0x10));
  EXPECT_TRUE(bus.insert(a, 0x110, 0x10));
  EXPECT_TRUE(bus.insert(a, 0xf0, 0x10));
}

TEST(Bus, RejectsEmptyWrappingAndNullRanges) {
  Bus bus;
  auto a = std::make_shared<RecordingDevice>();
  EXPECT_FALSE(bus.insert(a, 0x100, 0));
  EXPECT_FALSE(bus.insert(a, ~std::uint64_t{0} - 1, 3));
  EXPECT_TRUE(bus.insert(a, ~std::uint64_t{0} - 1, 2));  // ends at the last address
  EXPECT_FALSE(bus.insert(nullptr, 0x0, 1));
}

TEST(Bus, DispatchesWithOffsetRelativeToBase) {
  Bus bus;
  auto a = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.insert(a, 0x3f8, 8));
  std::array<std::uint8_t, 1> out{'x'};
  EXPECT_TRUE(bus.write(0x3fd, out));
  std::array<std::uint8_t, 2> in{};
  EXPECT_TRUE(bus.read(0x3fe, in));
  ASSERT_EQ(a->accesses.size(), 2u);
  EXPECT_TRUE(a->accesses[0].write);
  EXPECT_EQ(a->accesses[0].offset, 5u);
  EXPECT_EQ(a->accesses[0].data, std::vector<std::uint8_t>{'x'});
  EXPECT_FALSE(a->accesses[1].write);
  EXPECT_EQ(a->accesses[1].offset, 6u);
  EXPECT_EQ(in[0], 6);
  EXPECT_EQ(in[1], 7);
}

TEST(Bus, UnmappedReadSeesAllOnes) {
  Bus bus;
  std::array<std::uint8_t, 4> in{};
  EXPECT_FALSE(bus.read(0x60, in));
  for (auto b : in) EXPECT_EQ(b, 0xff);
  std::array<std::uint8_t, 1> out{1};
  EXPECT_FALSE(bus.write(0x60, out));
}

TEST(Bus, StraddlingAccessReachesNoDevice) {
  Bus bus;
  auto a = std::make_shared<RecordingDevice>();
  auto b = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.insert(a, 0x1000, 4));
  ASSERT_TRUE(bus.insert(b, 0x1004, 4));
  std::array<std::uint8_t, 4> in{};
  EXPECT_FALSE(bus.read(0x1002, in));
  for (auto v : in) EXPECT_EQ(v, 0xff);
  EXPECT_FALSE(bus.write(0x1003, in));
  EXPECT_TRUE(a->accesses.empty());
  EXPECT_TRUE(b->accesses.empty());
}

TEST(Bus, RemoveFreesTheRange) {
  Bus bus;
  auto a = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.insert(a, 0x40, 4));
  EXPECT_FALSE(bus.remove(0x41));
  EXPECT_TRUE(bus.remove(0x40));
  std::array<std::uint8_t, 1> in{};
  EXPECT_FALSE(bus.read(0x40, in));
  EXPECT_TRUE(bus.insert(a, 0x40, 4));
}

}  // namespace
}  // namespace hvz
