/* hostile [SECONDS]: a malicious virtio driver in the guest's userspace, for
 * guest-tests/hostile_test.sh. For every virtio-mmio window in /proc/iomem
 * it unbinds the kernel's driver (so /dev/mem may map the window), then
 * attacks the device through its registers and through rings it builds in
 * its own locked memory (guest-physical addresses from /proc/self/pagemap):
 * out-of-range queue select and size, odd-sized and unknown register
 * accesses, status written out of order, config writes at odd offsets and
 * sizes, notifications for queues that do not exist, ring addresses outside
 * RAM, malformed chains cycled through reset -> DRIVER_OK, a reset while
 * requests are in flight, and, for SECONDS (default 10) per device, a ring
 * re-filled as fast as the device drains it, ended by a reset whose
 * duration is printed. Progress lines start with "hvz-guest: hostile".
 * Built static into the test initramfs. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* virtio-mmio registers (virtio 1.2 4.2.2). */
enum {
  R_MAGIC = 0x000, R_DEVICE_ID = 0x008, R_DEVICE_FEATURES = 0x010, R_DEVICE_FEATURES_SEL = 0x014,
  R_DRIVER_FEATURES = 0x020, R_DRIVER_FEATURES_SEL = 0x024, R_QUEUE_SEL = 0x030,
  R_QUEUE_NUM_MAX = 0x034, R_QUEUE_NUM = 0x038, R_QUEUE_READY = 0x044, R_QUEUE_NOTIFY = 0x050,
  R_INTERRUPT_STATUS = 0x060, R_INTERRUPT_ACK = 0x064, R_STATUS = 0x070, R_DESC_LOW = 0x080,
  R_DESC_HIGH = 0x084, R_DRIVER_LOW = 0x090, R_DRIVER_HIGH = 0x094, R_DEVICE_LOW = 0x0a0,
  R_DEVICE_HIGH = 0x0a4, R_CONFIG = 0x100,
};
enum { S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8, S_NEEDS_RESET = 64 };
enum { F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4 };
enum { QSIZE = 16, PAGES = 64 };

struct page {
  volatile uint8_t *va;
  uint64_t pa;
};

static volatile uint8_t *win;
static struct page pages[PAGES];
static int devid;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void say(const char *what) {
  printf("hvz-guest: hostile %s (device %d)\n", what, devid);
  fflush(stdout);
}

static uint32_t rd(unsigned off) { return *(volatile uint32_t *)(win + off); }
static void wr(unsigned off, uint32_t v) { *(volatile uint32_t *)(win + off) = v; }

/* Locked anonymous pages and their guest-physical addresses. */
static int alloc_pages(void) {
  uint8_t *mem = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
  if (mem == MAP_FAILED) return -1;
  int pm = open("/proc/self/pagemap", O_RDONLY);
  if (pm < 0) return -1;
  for (int i = 0; i < PAGES; i++) {
    uint64_t entry = 0;
    uint8_t *va = mem + i * 4096;
    va[0] = 1;
    if (pread(pm, &entry, 8, (off_t)((uintptr_t)va / 4096) * 8) != 8) return -1;
    if (!(entry >> 63)) return -1;
    pages[i].va = va;
    pages[i].pa = (entry & ((1ull << 55) - 1)) * 4096;
  }
  close(pm);
  return 0;
}

/* Queue layout in pages[0..2] (descriptors, avail, used); buffers above. */
#define DESC ((volatile uint8_t *)pages[0].va)
#define AVAIL ((volatile uint16_t *)pages[1].va)
#define USED ((volatile uint16_t *)pages[2].va)

static void put_desc(int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
  volatile uint8_t *d = DESC + 16 * i;
  *(volatile uint64_t *)d = addr;
  *(volatile uint32_t *)(d + 8) = len;
  *(volatile uint16_t *)(d + 12) = flags;
  *(volatile uint16_t *)(d + 14) = next;
}

static void reset_device(void) { wr(R_STATUS, 0); }

/* The driver's initialisation with VERSION_1 only, every queue of the
 * device at the same layout addresses (desc, avail, used). */
static void init_device(uint64_t desc, uint64_t avail, uint64_t used, int queues) {
  reset_device();
  wr(R_STATUS, S_ACK);
  wr(R_STATUS, S_ACK | S_DRIVER);
  wr(R_DRIVER_FEATURES_SEL, 1);
  wr(R_DRIVER_FEATURES, 1);
  wr(R_DRIVER_FEATURES_SEL, 0);
  wr(R_DRIVER_FEATURES, 0);
  wr(R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
  for (int q = 0; q < queues; q++) {
    wr(R_QUEUE_SEL, q);
    wr(R_QUEUE_NUM, QSIZE);
    wr(R_DESC_LOW, (uint32_t)desc);
    wr(R_DESC_HIGH, (uint32_t)(desc >> 32));
    wr(R_DRIVER_LOW, (uint32_t)avail);
    wr(R_DRIVER_HIGH, (uint32_t)(avail >> 32));
    wr(R_DEVICE_LOW, (uint32_t)used);
    wr(R_DEVICE_HIGH, (uint32_t)(used >> 32));
    wr(R_QUEUE_READY, 1);
  }
  wr(R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

static void init_rings(int queues) {
  memset((void *)DESC, 0, 4096);
  memset((void *)AVAIL, 0, 4096);
  memset((void *)USED, 0, 4096);
  init_device(pages[0].pa, pages[1].pa, pages[2].pa, queues);
}

static int queues_of(int id) { return id == 1 || id == 3 ? 2 : 1; }
/* The queue a request goes to: virtio-net and virtio-console transmit on
 * queue 1, block and rng use queue 0. */
static int work_queue(int id) { return id == 1 || id == 3 ? 1 : 0; }

/* One request for the device kind: chain at descriptor 2*slot. */
static void build_request(int slot) {
  volatile uint8_t *buf = pages[3 + slot % 40].va;
  uint64_t pa = pages[3 + slot % 40].pa;
  int d = (2 * slot) % QSIZE;
  switch (devid) {
  case 2: /* block: read 2 KiB of sector 0, status byte at the end */
    memset((void *)buf, 0, 16);
    put_desc(d, pa, 16, F_NEXT, (d + 1) % QSIZE);
    put_desc((d + 1) % QSIZE, pa + 512, 2048 + 1, F_WRITE, 0);
    break;
  case 4: /* rng: 512 bytes of entropy */
    put_desc(d, pa, 512, F_WRITE, 0);
    break;
  default: /* net, console: a short frame or text to send */
    memset((void *)buf, 0, 64);
    memcpy((void *)(buf + 12), "hostile\n", 8);
    put_desc(d, pa, 64, 0, 0);
    break;
  }
}

static void publish(uint16_t *idx, uint16_t head) {
  AVAIL[2 + *idx % QSIZE] = head;
  __sync_synchronize();
  AVAIL[1] = ++*idx;
  __sync_synchronize();
}

static void attack_registers(void) {
  say("queue select and size out of range");
  wr(R_QUEUE_SEL, 0xffff);
  wr(R_QUEUE_NUM, 1024);
  wr(R_QUEUE_READY, 1);
  (void)rd(R_QUEUE_NUM_MAX);
  wr(R_QUEUE_SEL, 0xffffffff);
  (void)rd(R_QUEUE_READY);
  say("odd-sized and unknown register accesses");
  *(volatile uint8_t *)(win + R_STATUS) = 0xff;
  *(volatile uint16_t *)(win + R_QUEUE_SEL + 2) = 0xffff;
  (void)*(volatile uint8_t *)(win + R_MAGIC + 1);
  wr(0x0c8, 1);
  (void)rd(0x0f4);
  (void)rd(R_DRIVER_FEATURES);
  say("status out of order");
  reset_device();
  for (uint32_t s = 0; s < 256; s++) wr(R_STATUS, s * 0x1010101u);
  wr(R_STATUS, S_DRIVER_OK);
  wr(R_STATUS, S_FEATURES_OK);
  wr(R_STATUS, 0x80);
  reset_device();
  wr(R_STATUS, S_ACK);
  wr(R_DRIVER_FEATURES_SEL, 7);
  wr(R_DRIVER_FEATURES, 0xffffffff);
  wr(R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
  say("config accesses at odd offsets and sizes");
  for (unsigned off = R_CONFIG; off < 0x1000; off += 0x7b) {
    *(volatile uint8_t *)(win + off) = 0x5a;
    *(volatile uint16_t *)(win + off + 1) = 0x5a5a;
    (void)*(volatile uint32_t *)(win + (off & ~3u));
  }
  *(volatile uint32_t *)(win + 0xffc) = 0xdeadbeef;
  (void)*(volatile uint64_t *)(win + 0xff8);
  say("notifications for queues that do not exist");
  for (uint32_t q = 0; q < 64; q++) wr(R_QUEUE_NOTIFY, q * 0x04030201u);
  wr(R_QUEUE_NOTIFY, 0xffffffff);
  reset_device();
}

/* One past the highest guest-physical RAM address (/proc/iomem). */
static uint64_t ram_end;

static void attack_ring_addresses(void) {
  say("ring addresses outside RAM");
  /* Every address is outside RAM or runs past its end; none lies in RAM
   * the kernel uses (a ring there would make the device write into the
   * kernel on this program's behalf, which is the guest hurting itself). The
   * last one straddles the end of RAM: 16 bytes inside, the rest beyond. */
  const uint64_t bad[] = {0xfffffffffffff000ull, 0x7ffff0000000ull, 0xd0000000ull,
                          ram_end - 16};
  memset((void *)DESC, 0, 4096);
  memset((void *)AVAIL, 0, 4096);
  memset((void *)USED, 0, 4096);
  for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    init_device(bad[i], pages[1].pa, pages[2].pa, queues_of(devid));
    init_device(pages[0].pa, bad[i], pages[2].pa, queues_of(devid));
    init_device(pages[0].pa, pages[1].pa, bad[i] + 1, queues_of(devid));
  }
  if (!(rd(R_STATUS) & S_NEEDS_RESET)) say("expected NEEDS_RESET after a bad ring: not set");
  reset_device();
}

static void attack_malformed_chains(int cycles) {
  say("malformed chains cycled through reset");
  int q = work_queue(devid);
  for (int c = 0; c < cycles; c++) {
    init_rings(queues_of(devid));
    uint16_t idx = 0;
    switch (c % 4) {
    case 0: put_desc(0, pages[3].pa, 16, F_NEXT, 0); break;         /* loop */
    case 1: put_desc(0, 0xfffffffff000ull, 4096, F_WRITE, 0); break; /* outside RAM */
    case 2: put_desc(0, pages[3].pa, 32, F_INDIRECT, 0); break;     /* not negotiated */
    case 3: AVAIL[1] = 1000; break;                                  /* idx far ahead */
    }
    if (c % 4 != 3) publish(&idx, 0);
    wr(R_QUEUE_NOTIFY, q);
    for (int i = 0; i < 1000 && !(rd(R_STATUS) & S_NEEDS_RESET); i++) usleep(100);
    wr(R_INTERRUPT_ACK, rd(R_INTERRUPT_STATUS));
  }
  reset_device();
}

static void attack_reset_in_flight(void) {
  say("reset while requests are in flight");
  int q = work_queue(devid);
  for (int round = 0; round < 50; round++) {
    init_rings(queues_of(devid));
    uint16_t idx = 0;
    for (int s = 0; s < QSIZE / 2; s++) {
      build_request(s);
      publish(&idx, (uint16_t)((2 * s) % QSIZE));
    }
    wr(R_QUEUE_NOTIFY, q);
    reset_device();
  }
}

static void attack_refill(double seconds) {
  say("refilling the ring as fast as it drains");
  int q = work_queue(devid);
  init_rings(queues_of(devid));
  uint16_t idx = 0;
  const int slots = QSIZE / 2;
  for (int s = 0; s < slots; s++) build_request(s);
  unsigned long posted = 0;
  double end = now() + seconds;
  while (now() < end) {
    /* Every completed request is posted again at once. */
    while ((uint16_t)(idx - USED[1]) < slots) {
      publish(&idx, (uint16_t)((2 * (idx % slots)) % QSIZE));
      posted++;
    }
    wr(R_QUEUE_NOTIFY, q);
    if (rd(R_STATUS) & S_NEEDS_RESET) break;
  }
  double t0 = now();
  reset_device();
  char line[128];
  snprintf(line, sizeof line, "reset under refill took %.0f ms after %lu requests",
           (now() - t0) * 1000, posted);
  say(line);
}

static int unbind(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "/sys/bus/platform/devices/%s/driver/unbind", name);
  int fd = open(path, O_WRONLY);
  if (fd < 0) return 0; /* no driver bound */
  int ok = write(fd, name, strlen(name)) == (ssize_t)strlen(name);
  close(fd);
  return ok ? 0 : -1;
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (alloc_pages() < 0) {
    printf("hvz-guest: hostile cannot lock pages or read pagemap\n");
    return 1;
  }
  int mem = open("/dev/mem", O_RDWR | O_SYNC);
  if (mem < 0) { perror("/dev/mem"); return 1; }
  FILE *iomem = fopen("/proc/iomem", "r");
  if (!iomem) { perror("/proc/iomem"); return 1; }
  char line[256];
  while (fgets(line, sizeof line, iomem)) {
    unsigned long long start, end;
    if (sscanf(line, "%llx-%llx : System RAM", &start, &end) == 2 && end + 1 > ram_end) {
      ram_end = end + 1;
    }
  }
  if (ram_end == 0) { printf("hvz-guest: hostile found no RAM in /proc/iomem\n"); return 1; }
  rewind(iomem);
  int attacked = 0;
  unsigned long long seen[64];
  int nseen = 0;
  while (fgets(line, sizeof line, iomem)) {
    unsigned long long start, end;
    char name[64];
    if (sscanf(line, " %llx-%llx : %63s", &start, &end, name) != 3) continue;
    if (strncmp(name, "LNRO0005", 8) != 0) continue;
    /* A bound driver's request nests a second entry for the same window. */
    int dup = 0;
    for (int i = 0; i < nseen; i++) dup |= seen[i] == start;
    if (dup || nseen == 64) continue;
    seen[nseen++] = start;
    if (unbind(name) < 0) { printf("hvz-guest: hostile cannot unbind %s\n", name); continue; }
    win = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mem, (off_t)start);
    if (win == MAP_FAILED) { printf("hvz-guest: hostile cannot map %s\n", name); continue; }
    if (rd(R_MAGIC) != 0x74726976) { munmap((void *)win, 4096); continue; }
    devid = (int)rd(R_DEVICE_ID);
    say("attacking");
    attack_registers();
    attack_ring_addresses();
    attack_malformed_chains(200);
    attack_reset_in_flight();
    attack_refill(seconds);
    reset_device();
    munmap((void *)win, 4096);
    attacked++;
  }
  printf("hvz-guest: hostile done, %d devices attacked\n", attacked);
  return 0;
}
