/* blkbench DEVICE [SECONDS]: the guest side of scripts/bench/block.
 * Sequential write and read (1 MiB O_DIRECT requests over the first
 * 128 MiB) in MB/s, then 4 KiB O_DIRECT random reads for SECONDS (default
 * 5) in IOPS, one request in flight. Built static into the test initramfs. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  double seconds = argc > 2 ? atof(argv[2]) : 5;
  int fd = open(argv[1], O_RDWR | O_DIRECT);
  if (fd < 0) { perror(argv[1]); return 1; }
  uint64_t size = 0;
  if (ioctl(fd, BLKGETSIZE64, &size) < 0) { perror("BLKGETSIZE64"); return 1; }
  const size_t big = 1 << 20;
  uint64_t span = size < (128ull << 20) ? size : (128ull << 20);
  span -= span % big;
  void *buf;
  if (posix_memalign(&buf, 4096, big)) return 1;
  memset(buf, 0x5a, big);

  double t0 = now();
  for (uint64_t off = 0; off < span; off += big)
    if (pwrite(fd, buf, big, off) != (ssize_t)big) { perror("pwrite"); return 1; }
  fdatasync(fd);
  double w = span / (now() - t0) / 1e6;

  t0 = now();
  for (uint64_t off = 0; off < span; off += big)
    if (pread(fd, buf, big, off) != (ssize_t)big) { perror("pread"); return 1; }
  double r = span / (now() - t0) / 1e6;

  uint64_t blocks = size / 4096, n = 0, x = 88172645463325252ull;
  t0 = now();
  double end = t0 + seconds;
  while (now() < end) {
    for (int i = 0; i < 64; i++, n++) {
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      if (pread(fd, buf, 4096, (x % blocks) * 4096) != 4096) { perror("pread 4k"); return 1; }
    }
  }
  double iops = n / (now() - t0);
  printf("blkbench: seq_write_mbps %.1f seq_read_mbps %.1f randread_4k_iops %.0f\n", w, r, iops);
  return 0;
}
