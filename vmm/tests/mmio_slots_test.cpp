// MmioSlots: virtio-mmio windows and GSIs handed out in order, as x86_64's
// layout places them, until the IOAPIC's pins run out.
#include "vmm/mmio_slots.hpp"

#include <gtest/gtest.h>

#include "vmm/x86_64/layout.hpp"

namespace hvz::vmm {
namespace {

TEST(MmioSlots, WindowsAndGsisFollowOneAnother) {
  MmioSlots slots(0xd0000000, 0x1000, 5, 24);
  auto first = slots.take();
  auto second = slots.take();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->base, 0xd0000000u);
  EXPECT_EQ(first->size, 0x1000u);
  EXPECT_EQ(first->gsi, 5u);
  EXPECT_EQ(second->base, 0xd0001000u);
  EXPECT_EQ(second->gsi, 6u);
  EXPECT_EQ(slots.used(), 2u);
}

TEST(MmioSlots, RefusesOnceThePinsAreTaken) {
  MmioSlots slots(x86_64::kVirtioMmioStart, x86_64::kVirtioMmioSize, x86_64::kVirtioGsiBase,
                  x86_64::kIoapicPins);
  const std::uint32_t room = x86_64::kIoapicPins - x86_64::kVirtioGsiBase;
  for (std::uint32_t i = 0; i < room; ++i) ASSERT_TRUE(slots.take()) << i;
  auto extra = slots.take();
  ASSERT_FALSE(extra);
  EXPECT_EQ(extra.error().message(), "too many virtio devices for the IOAPIC's pins");
  EXPECT_EQ(slots.used(), room);
}

}  // namespace
}  // namespace hvz::vmm
