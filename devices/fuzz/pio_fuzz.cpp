// Fuzz harness for the legacy PIO devices on a Bus (vmm/core/bus.hpp) as
// the VMM wires them: the 16550A UART at 0x3f8, the i8042 at 0x60, the CMOS
// RTC at 0x70 and the ACPI PM registers at 0x600, driven by port reads and
// writes of any width and value, host input for the UART, Ctrl-Alt-Del
// through the i8042, and a guest-visible clock the input moves. Extra
// ranges are inserted into and removed from the same Bus, which is checked
// against a model: an insert succeeds exactly when the range is non-empty,
// does not wrap and overlaps nothing; an access reaches exactly the device
// covering all of it, at the right offset, and otherwise reads 0xff.
//
// Input: i64 clock seconds, then operations (see the switch below).
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "devices/acpi_pm.hpp"
#include "devices/cmos_rtc.hpp"
#include "devices/i8042.hpp"
#include "devices/serial.hpp"
#include "vmm/core/bus.hpp"
#include "vmm/core/fuzz/fuzz_input.hpp"

namespace {

using namespace hvz;
using namespace hvz::devices;
using hvz::fuzz::FuzzInput;

constexpr unsigned kMaxOps = 512;
constexpr std::size_t kMaxExtraRanges = 16;

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "hvz fuzz: invariant broken: %s\n", what);
  std::abort();
}

class CountingIrq : public IrqLine {
 public:
  Expected<void> trigger() override {
    ++count;
    return {};
  }
  std::uint64_t count = 0;
};

class CountingOutput : public SerialOutput {
 public:
  void write(std::span<const std::uint8_t> bytes) override { count += bytes.size(); }
  std::uint64_t count = 0;
};

// A device of the model's extra ranges: remembers where it was accessed.
class ProbeDevice : public BusDevice {
 public:
  void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
    last = {offset, data.size()};
    std::fill(data.begin(), data.end(), std::uint8_t{0x5a});
  }
  void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
    last = {offset, data.size()};
  }
  std::optional<std::pair<std::uint64_t, std::size_t>> last;
};

struct Range {
  std::uint64_t base;
  std::uint64_t len;
  std::shared_ptr<ProbeDevice> probe;  // null for the real devices
};

enum Op : std::uint8_t {
  kRead,
  kWrite,
  kSerialInput,
  kCtrlAltDel,
  kClock,
  kInsert,
  kRemove,
  kOpCount,
};

class Harness {
 public:
  explicit Harness(std::int64_t clock) : clock_(clock) {
    serial_ = std::make_shared<Serial>(serial_irq_, serial_out_);
    // The host input thread's cue: feed what waits, as the VMM does.
    serial_->set_input_drained_callback([this] { feed_serial(); });
    i8042_ = std::make_shared<I8042>([this] { ++resets_; }, kbd_irq_);
    cmos_ = std::make_shared<CmosRtc>([this] { return clock_; });
    pm_ = std::make_shared<AcpiPm>(
        5, 1, [this] { ++poweroffs_; }, [this] { ++resets_; });
    add(serial_, 0x3f8, 8);
    add(i8042_, 0x60, i8042::kRegionSize);
    add(cmos_, 0x70, cmos::kRegionSize);
    add(pm_, 0x600, AcpiPm::kSize);
  }

  void run(FuzzInput& in) {
    for (unsigned op = 0; op < kMaxOps && !in.empty(); ++op) {
      switch (in.u8() % kOpCount) {
        case kRead:
          read(decode_addr(in), decode_size(in));
          break;
        case kWrite: {
          const std::uint64_t addr = decode_addr(in);
          const std::size_t size = decode_size(in);
          write(addr, size, in.u64());
          break;
        }
        case kSerialInput: {
          auto bytes = in.sized_bytes(256);
          pending_input_.insert(pending_input_.end(), bytes.begin(), bytes.end());
          feed_serial();
          break;
        }
        case kCtrlAltDel:
          (void)i8042_->trigger_ctrl_alt_del();
          break;
        case kClock:
          clock_ = static_cast<std::int64_t>(in.u64());
          break;
        case kInsert:
          insert(in.u64(), in.u64());
          break;
        case kRemove:
          remove(in);
          break;
      }
    }
  }

 private:
  void add(std::shared_ptr<BusDevice> dev, std::uint64_t base, std::uint64_t len) {
    check(bus_.insert(std::move(dev), base, len).has_value(), "inserting a PIO device");
    model_.push_back(Range{base, len, nullptr});
  }

  // Mostly the devices' own ports (a few past their ends), sometimes an
  // extra range's, sometimes any address.
  std::uint64_t decode_addr(FuzzInput& in) {
    static constexpr std::uint64_t kBases[] = {0x3f8, 0x60, 0x70, 0x600};
    static constexpr std::uint64_t kSpans[] = {9, 6, 3, 4};
    const std::uint8_t sel = in.u8();
    const unsigned which = sel % 6;
    if (which < 4) return kBases[which] + (sel >> 3) % kSpans[which];
    if (which == 4 && model_.size() > 4) {
      const Range& r = model_[4 + in.u8() % (model_.size() - 4)];
      return r.base + in.u64() % (r.len + 2);
    }
    return in.u64();
  }
  static std::size_t decode_size(FuzzInput& in) {
    static constexpr std::size_t kSizes[] = {1, 1, 1, 2, 4};
    const std::uint8_t sel = in.u8();
    if (sel < 0xf0) return kSizes[sel % std::size(kSizes)];
    return sel % 9;
  }

  // The range the model says covers all of [addr, addr + size).
  const Range* expected(std::uint64_t addr, std::size_t size) const {
    if (size == 0) return nullptr;
    for (const Range& r : model_) {
      if (addr < r.base) continue;
      const std::uint64_t off = addr - r.base;
      if (off < r.len && size <= r.len - off) return &r;
    }
    return nullptr;
  }

  void check_routing(const Range* r, bool reached, std::uint64_t addr, std::size_t size) {
    check(
        reached == (r != nullptr),
        "the bus routed an access the model says goes nowhere (or not one it says goes somewhere)");
    if (r == nullptr || !r->probe) return;
    check(r->probe->last.has_value() && r->probe->last->first == addr - r->base &&
              r->probe->last->second == size,
          "the bus gave the device the wrong offset or size");
    r->probe->last.reset();
  }

  void read(std::uint64_t addr, std::size_t size) {
    std::array<std::uint8_t, 8> buf;
    buf.fill(0x33);
    const std::span<std::uint8_t> data(buf.data(), size);
    const Range* r = expected(addr, size);
    const bool reached = bus_.read(addr, data);
    check_routing(r, reached, addr, size);
    if (!reached) {
      for (std::uint8_t b : data) check(b == 0xff, "an unrouted read did not see 0xff");
      return;
    }
    if (size == 0) return;
    if (addr == 0x3f8 + 5) {
      check((data[0] & 0x60) == 0x60, "UART LSR without THRE and TEMT");
    } else if (addr == 0x3f8 + 2) {
      const std::uint8_t id = data[0] & 0x0f;
      check(id == 1 || id == 2 || id == 4 || id == 6, "UART IIR with an impossible id");
    } else if (addr == 0x70) {
      check(data[0] <= 0x7f, "CMOS index reads back with the NMI bit");
    } else if (addr == 0x71) {
      check_cmos_value(data[0]);
    } else if (addr >= 0x600 && addr < 0x603) {
      for (std::uint8_t b : data) check(b == 0, "ACPI PM register reads non-zero");
    }
  }

  // A time register in BCD mode reads as valid BCD (hours may carry PM).
  void check_cmos_value(std::uint8_t value) {
    std::uint8_t index = 0;
    std::uint8_t reg_b = 0;
    cmos_->read(cmos::kIndexOffset, std::span(&index, 1));
    switch (index) {
      case cmos::kSeconds:
      case cmos::kMinutes:
      case cmos::kHours:
      case cmos::kDayOfWeek:
      case cmos::kDayOfMonth:
      case cmos::kMonth:
      case cmos::kYear:
      case cmos::kCentury:
        break;
      default:
        return;
    }
    const std::uint8_t b_index = cmos::kRegB;
    cmos_->write(cmos::kIndexOffset, std::span(&b_index, 1));
    cmos_->read(cmos::kDataOffset, std::span(&reg_b, 1));
    cmos_->write(cmos::kIndexOffset, std::span(&index, 1));
    if (reg_b & cmos::kRegBBinary) return;
    if (index == cmos::kHours) value &= static_cast<std::uint8_t>(~cmos::kHourPm);
    check((value & 0x0f) <= 9 && (value >> 4) <= 9, "CMOS time register is not BCD");
  }

  void write(std::uint64_t addr, std::size_t size, std::uint64_t value) {
    std::array<std::uint8_t, 8> buf;
    for (std::size_t i = 0; i < buf.size(); ++i)
      buf[i] = static_cast<std::uint8_t>(value >> (8 * i));
    const Range* r = expected(addr, size);
    const bool reached = bus_.write(addr, std::span<const std::uint8_t>(buf.data(), size));
    check_routing(r, reached, addr, size);
  }

  void insert(std::uint64_t base, std::uint64_t len) {
    if (model_.size() >= 4 + kMaxExtraRanges) return;
    bool ok = len != 0 && base + (len - 1) >= base;
    for (const Range& r : model_) {
      if (!ok) break;
      // Both ranges are non-empty and do not wrap: compare their last bytes.
      const std::uint64_t last = base + (len - 1);
      const std::uint64_t r_last = r.base + (r.len - 1);
      if (base <= r_last && r.base <= last) ok = false;
    }
    auto probe = std::make_shared<ProbeDevice>();
    const bool inserted = bus_.insert(probe, base, len).has_value();
    check(inserted == ok, "Bus::insert disagrees with the model on overlap or wrap");
    if (inserted) model_.push_back(Range{base, len, probe});
  }

  void remove(FuzzInput& in) {
    if (model_.size() <= 4) {
      // A base nothing was inserted at.
      const std::uint64_t base = in.u64();
      for (const Range& r : model_) {
        if (r.base == base) return;
      }
      check(!bus_.remove(base).has_value(), "Bus::remove of a base never inserted succeeded");
      return;
    }
    const std::size_t i = 4 + in.u8() % (model_.size() - 4);
    check(bus_.remove(model_[i].base).has_value(), "Bus::remove of an inserted range failed");
    model_.erase(model_.begin() + static_cast<std::ptrdiff_t>(i));
  }

  void feed_serial() {
    while (!pending_input_.empty()) {
      const std::size_t space = serial_->input_space();
      check(space <= uart::kFifoSize, "UART input space above the FIFO size");
      if (space == 0) return;
      std::vector<std::uint8_t> chunk(pending_input_.begin(),
                                      pending_input_.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                                   space, pending_input_.size())));
      auto taken = serial_->enqueue_input(chunk);
      if (!taken || *taken == 0) return;
      check(*taken <= chunk.size(), "UART took more input than offered");
      pending_input_.erase(pending_input_.begin(),
                           pending_input_.begin() + static_cast<std::ptrdiff_t>(*taken));
    }
  }

  std::int64_t clock_;
  Bus bus_;
  std::vector<Range> model_;
  std::shared_ptr<CountingIrq> serial_irq_ = std::make_shared<CountingIrq>();
  std::shared_ptr<CountingIrq> kbd_irq_ = std::make_shared<CountingIrq>();
  std::shared_ptr<CountingOutput> serial_out_ = std::make_shared<CountingOutput>();
  std::shared_ptr<Serial> serial_;
  std::shared_ptr<I8042> i8042_;
  std::shared_ptr<CmosRtc> cmos_;
  std::shared_ptr<AcpiPm> pm_;
  std::deque<std::uint8_t> pending_input_;
  std::uint64_t resets_ = 0;
  std::uint64_t poweroffs_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  Harness h(static_cast<std::int64_t>(in.u64()));
  h.run(in);
  return 0;
}
