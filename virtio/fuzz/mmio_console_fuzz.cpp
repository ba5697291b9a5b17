// Fuzz harness for virtio-mmio + virtio-console
// (virtio/console/console_device.hpp): register sequences, guest output
// written to a pipe (or socket) the harness drains, host input typed into
// a pipe (or the same socket), input reaching end of file.
//
// Input (after mmio_fuzz.hpp's u8 config): config bit 2 one connected
// socket for both directions instead of two pipes, bit 3 no input at all;
// a u16-sized memory image; operations.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "virtio/console/console_device.hpp"
#include "virtio/fuzz/mmio_fuzz.hpp"

namespace {

using namespace hvz;
using namespace hvz::virtio;
using namespace hvz::virtio::console;
using namespace hvz::virtio::fuzz;

// The host's ends: where guest output arrives, where input is typed.
struct HostEnds {
  UniqueFd device_out;  // the device writes here
  UniqueFd device_in;   // and reads here (may be the same socket)
  UniqueFd host_out;    // the harness reads guest output here
  UniqueFd host_in;     // and types input here
  bool shared = false;  // device_in is device_out
};

HostEnds make_ends(bool socket, bool no_input) {
  HostEnds e;
  if (socket) {
    int sv[2];
    check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
          "socketpair");
    e.device_out.reset(sv[0]);
    e.host_out.reset(sv[1]);
    e.shared = true;
    if (!no_input) e.host_in.reset(::dup(sv[1]));
    return e;
  }
  int out[2];
  check(::pipe2(out, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
  e.host_out.reset(out[0]);
  e.device_out.reset(out[1]);
  if (!no_input) {
    int in[2];
    check(::pipe2(in, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    e.device_in.reset(in[0]);
    e.host_in.reset(in[1]);
  }
  return e;
}

class ConsoleHooks : public MmioDeviceHooks {
 public:
  explicit ConsoleHooks(HostEnds& ends) : ends_(ends) {}

  void host_event(FuzzInput& in) override {
    switch (in.u8() % 3) {
      case 0: {
        auto bytes = in.sized_bytes(4096);
        if (!ends_.host_in) break;
        if (ends_.shared) {
          // After a shutdown(SHUT_WR) this fails with EPIPE, no signal.
          (void)::send(ends_.host_in.get(), bytes.data(), bytes.size(),
                       MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
          (void)::write(ends_.host_in.get(), bytes.data(), bytes.size());
        }
        break;
      }
      case 1:
        drain();
        break;
      case 2:
        // The input reaches end of file (for a socket: the peer stops
        // sending).
        if (ends_.shared && ends_.host_in) {
          (void)::shutdown(ends_.host_in.get(), SHUT_WR);
        } else {
          ends_.host_in.reset();
        }
        break;
    }
  }
  void settle(const GuestMemory&, const std::vector<RingLayout>&, std::uint32_t) override {
    drain();
  }

 private:
  void drain() {
    char buf[4096];
    while (::read(ends_.host_out.get(), buf, sizeof buf) > 0) {
    }
  }
  HostEnds& ends_;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hvz::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::uint8_t cfg = in.u8();
  HostEnds ends = make_ends((cfg & 4) != 0, (cfg & 8) != 0);
  const int out_fd = ends.device_out.get();
  const int in_fd = ends.shared ? (ends.host_in ? out_fd : -1) : ends.device_in.get();
  auto device =
      std::make_shared<ConsoleDevice>(out_fd, in_fd, metrics::registry().group("console"));
  const GuestMemory& mem = small_memory(cfg & 3);
  fill_memory(mem, in.sized_bytes(kSmallMemoryEnd));

  ConsoleHooks hooks(ends);
  {
    MmioHarness harness(mem, device);
    harness.run(in, hooks);
  }
  // The device is reset and gone from the loop; its fds close after it.
  device.reset();
  return 0;
}
