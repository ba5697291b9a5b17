// Device configuration space helpers: the byte-wise read every device did
// by hand (out-of-range bytes read as zero, no wrap-around of offset +
// size), so a transport can hand any guest offset and size to a device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace hvz::virtio {

// Copies config[offset..] into `data`; bytes past the end read as 0.
inline void read_config_bytes(std::span<const std::uint8_t> config, std::uint64_t offset,
                              std::span<std::uint8_t> data) {
  for (std::size_t i = 0; i < data.size(); ++i) {
    // offset + i cannot wrap into range: compare without adding first.
    data[i] = (offset < config.size() && i < config.size() - offset) ? config[offset + i] : 0;
  }
}

}  // namespace hvz::virtio
