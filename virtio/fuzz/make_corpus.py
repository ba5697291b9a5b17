#!/usr/bin/env python3
"""Writes the seed corpora of the virtio fuzz harnesses (corpus/<name>/).

Each seed is a meaningful run in the harness's input format (see the
comment atop <name>_fuzz.cpp): well-formed rings, requests and frames a
real driver would produce, and the malformed ones the devices must refuse.
The encoders here mirror the harnesses' decoders; rerun this script after
changing a format. Usage: make_corpus.py [OUTDIR] (default: corpus/ beside
this script).
"""
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def u8(v): return struct.pack("<B", v & 0xff)
def u16(v): return struct.pack("<H", v & 0xffff)
def u32(v): return struct.pack("<I", v & 0xffffffff)
def u64(v): return struct.pack("<Q", v & 0xffffffffffffffff)
def sized(b, width=u16): return width(len(b)) + b


def write(name, seed, data):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, seed), "wb") as f:
        f.write(data)


# Descriptor flags and features.
NEXT, WRITE, INDIRECT = 1, 2, 4

# ---- fuzz_support.hpp helpers ----


def desc(addr, length, writable=False, indirect=False):
    """One descriptor of post_chain(): linked to the next slot automatically."""
    f = (1 if writable else 0) | (2 if indirect else 0)
    return u16(addr) + u16(length) + u8(f)


def raw_desc(addr, length, flags, nxt):
    """A descriptor with its flags and next index as given (bit 2: raw)."""
    return u16(addr) + u16(length) + u8(4 | (flags << 3)) + u8(nxt)


def chain(first, descs):
    return u8(len(descs) - 1) + u8(first) + b"".join(descs)


def mutate(addr, data):
    return u32(addr) + u8(len(data)) + data


def table(entries):
    """An indirect table in guest memory: (addr, len, flags, next) entries."""
    return b"".join(u64(a) + u32(l) + struct.pack("<HH", f, n) for a, l, f, n in entries)


# ---- queue_fuzz.cpp ----
Q_POP, Q_MUTATE, Q_POST, Q_ADD_USED, Q_NEEDS, Q_ENABLE, Q_UNDO, Q_RESET, Q_READ_HELD = range(9)


def queue_seed(cfg, size, ops, image=b"", desc_at=0x1000, avail=0x2000, used=0x3000):
    return u8(cfg) + u16(size) + u64(desc_at) + u64(avail) + u64(used) + sized(image) + ops


def q_pop(read_chunks=1, write_chunks=1, hold=False):
    """Pop and consume: each Reader/Writer step takes a size byte and a
    slices-or-copy flag; then whether to hold the chain."""
    body = (u8(0xff) + u8(0)) * read_chunks + (u8(0xff) + u8(1)) * write_chunks
    return u8(Q_POP) + body + u8(1 if hold else 0)


def queue_corpus():
    n = "queue"
    write(n, "one-readable-buffer", queue_seed(16, 16,
          u8(Q_POST) + chain(0, [desc(0x4000, 64)]) + q_pop(1, 0) + u8(Q_NEEDS)))
    write(n, "header-data-status", queue_seed(16, 16,
          u8(Q_POST) + chain(0, [desc(0x4000, 16), desc(0x5000, 512, True), desc(0x6000, 1, True)]) +
          q_pop(1, 3)))
    write(n, "two-chains-used", queue_seed(16, 8,
          u8(Q_POST) + chain(0, [desc(0x4000, 100)]) +
          u8(Q_POST) + chain(1, [desc(0x4100, 200, True)]) +
          q_pop(1, 0) + q_pop(0, 1) + u8(Q_ADD_USED) + u16(0) + u32(100)))
    write(n, "event-idx", queue_seed(16 | 4, 16,
          u8(Q_POST) + chain(0, [desc(0x4000, 32)]) + q_pop(1, 0) + u8(Q_NEEDS) + u8(Q_ENABLE) +
          u8(Q_POST) + chain(1, [desc(0x4000, 32)]) + q_pop(1, 0) + u8(Q_NEEDS)))
    # An indirect table of three entries at 0x5000: header, data, status.
    ind = table([(0x6000, 16, NEXT, 1), (0x6100, 512, WRITE | NEXT, 2), (0x6400, 1, WRITE, 0)])
    write(n, "indirect", queue_seed(16 | 8, 16,
          u8(Q_MUTATE) + mutate(0x5000, ind) +
          u8(Q_POST) + chain(0, [desc(0x5000, len(ind), indirect=True)]) + q_pop(1, 3)))
    nested = table([(0x5000, 16, INDIRECT, 0)])
    write(n, "indirect-nested", queue_seed(16 | 8, 16,
          u8(Q_MUTATE) + mutate(0x5000, nested) +
          u8(Q_POST) + chain(0, [desc(0x5000, 16, indirect=True)]) + q_pop() + q_pop()))
    write(n, "indirect-without-feature", queue_seed(16, 16,
          u8(Q_POST) + chain(0, [desc(0x5000, 16, indirect=True)]) + q_pop()))
    write(n, "loop", queue_seed(16, 16,
          u8(Q_POST) + chain(0, [raw_desc(0x4000, 8, NEXT, 0)]) + q_pop() + q_pop() +
          u8(Q_RESET) + u16(16) + u64(0x1000) + u64(0x2000) + u64(0x3000) + q_pop()))
    write(n, "next-out-of-range", queue_seed(16, 4,
          u8(Q_POST) + chain(0, [raw_desc(0x4000, 8, NEXT, 9)]) + q_pop()))
    write(n, "readable-after-writable", queue_seed(16, 16,
          u8(Q_POST) + chain(0, [desc(0x4000, 8, True), desc(0x4100, 8)]) + q_pop()))
    write(n, "outside-ram", queue_seed(16, 16,
          u8(Q_POST) + chain(0, [desc(0xfff0, 0x20)]) + q_pop()))
    # Layout 1: two adjacent regions; a buffer may not span them.
    write(n, "straddles-regions", queue_seed(16 | 1, 16,
          u8(Q_POST) + chain(0, [desc(0x7ff0, 0x20)]) + q_pop()))
    write(n, "hole", queue_seed(16 | 2, 16,
          u8(Q_POST) + chain(0, [desc(0x8800, 0x10)]) + q_pop()))
    write(n, "avail-idx-too-far", queue_seed(16, 16, q_pop() + q_pop(),
          image=b"\0" * 0x102 + u16(100), avail=0x100))
    write(n, "bad-size", queue_seed(0, 3, u8(Q_POST) + chain(0, [desc(0x4000, 8)]) + q_pop()))
    write(n, "unaligned-rings", queue_seed(0, 16,
          u8(Q_POST) + chain(0, [desc(0x4000, 8)]) + q_pop(), desc_at=0x1008, avail=0x2001,
          used=0x3002))
    write(n, "rings-outside-ram", queue_seed(0, 256, q_pop() + u8(Q_ADD_USED) + u16(0) + u32(0),
          desc_at=0xffff_ffff_ffff_fff0, avail=0xfff0, used=0x10000))
    # The driver rewrites the descriptor after the pop; the held chain is
    # read again (the double fetch the device must not do).
    write(n, "double-fetch", queue_seed(16, 16,
          u8(Q_POST) + chain(0, [desc(0x4000, 64), desc(0x4100, 64, True)]) +
          q_pop(1, 1, hold=True) +
          u8(Q_MUTATE) + mutate(0x1000, u64(0xfffff000) + u32(0xffffffff)) +
          u8(Q_READ_HELD) + (u8(0xff) + u8(0)) + (u8(0xff) + u8(1))))
    write(n, "undo-pop", queue_seed(16, 16,
          u8(Q_POST) + chain(0, [desc(0x4000, 64, True)]) + q_pop(0, 1, hold=True) +
          u8(Q_UNDO) + q_pop(0, 1)))
    # Twelve chains through a ring of four: indices wrap.
    ops = b""
    for i in range(12):
        ops += u8(Q_POST) + chain(i % 4, [desc(0x4000 + 0x100 * (i % 4), 32, True)]) + q_pop(0, 1)
    write(n, "wrap", queue_seed(16 | 4, 4, ops))
    write(n, "long-chain", queue_seed(16, 16,
          u8(Q_POST) + chain(0, [desc(0x4000 + i * 0x100, 0x100) for i in range(8)]) + q_pop(8, 0)))


# ---- block_request_fuzz.cpp ----
B_POST, B_MUTATE, B_PROCESS, B_RACING, B_PARSE = range(5)
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES = 0, 1, 4, 8, 11, 13


def header(kind, sector=0):
    return u32(kind) + u32(0) + u64(sector)


def block_seed(cfg, sectors, ops, limits=b""):
    return u8(cfg) + u16(sectors) + limits + sized(b"") + ops


def request(kind, sector, descs, extra=b"", slot=0):
    """Header at 0x100 (plus `extra` right after it), the chain, process."""
    return (u8(B_MUTATE) + mutate(0x100, header(kind, sector) + extra) +
            u8(B_POST) + chain(slot, descs))


def block_corpus():
    n = "block_request"
    hdr = desc(0x100, 16)
    status = desc(0x600, 1, True)
    write(n, "read-one-sector", block_seed(0, 64,
          request(T_IN, 3, [hdr, desc(0x1000, 512, True), status]) + u8(B_PROCESS) + u8(0)))
    write(n, "read-process-request", block_seed(0, 64,
          request(T_IN, 0, [hdr, desc(0x1000, 1024, True), status]) + u8(B_PROCESS) + u8(1)))
    write(n, "write-two-segments", block_seed(0, 64,
          request(T_OUT, 10, [hdr, desc(0x1000, 512), desc(0x2000, 512), status]) +
          u8(B_PROCESS) + u8(0) +
          request(T_IN, 10, [hdr, desc(0x3000, 1024, True), status], slot=4) +
          u8(B_PROCESS) + u8(0)))
    write(n, "flush", block_seed(0, 8, request(T_FLUSH, 0, [hdr, status]) + u8(B_PROCESS) + u8(0)))
    write(n, "get-id", block_seed(0, 8,
          request(T_GET_ID, 0, [hdr, desc(0x1000, 20, True), status]) + u8(B_PROCESS) + u8(0)))
    write(n, "get-id-short", block_seed(0, 8,
          request(T_GET_ID, 0, [hdr, desc(0x1000, 19, True), status]) + u8(B_PROCESS) + u8(0)))
    seg = u64(8) + u32(16) + u32(0)
    write(n, "discard", block_seed(2, 64,
          request(T_DISCARD, 0, [desc(0x100, 32), status], extra=seg) + u8(B_PROCESS) + u8(0)))
    wz = u64(0) + u32(8) + u32(1) + u64(32) + u32(8) + u32(0)
    write(n, "write-zeroes-unmap", block_seed(2 | 4, 64,
          request(T_WRITE_ZEROES, 0, [desc(0x100, 48), status], extra=wz) + u8(B_PROCESS) +
          u8(0)))
    write(n, "write-zeroes-limits", block_seed(4 | 8, 64,
          request(T_WRITE_ZEROES, 0, [desc(0x100, 48), status], extra=wz) + u8(B_PROCESS) + u8(0),
          limits=u16(16) + u8(1) + u16(4) + u8(1)))
    write(n, "write-read-only", block_seed(1, 64,
          request(T_OUT, 0, [hdr, desc(0x1000, 512), status]) + u8(B_PROCESS) + u8(0)))
    write(n, "past-the-end", block_seed(0, 8,
          request(T_IN, 7, [hdr, desc(0x1000, 1024, True), status]) + u8(B_PROCESS) + u8(0) +
          request(T_IN, 0xffffffffffffffff, [hdr, desc(0x1000, 512, True), status], slot=4) +
          u8(B_PROCESS) + u8(0)))
    write(n, "odd-length", block_seed(0, 8,
          request(T_IN, 0, [hdr, desc(0x1000, 511, True), status]) + u8(B_PROCESS) + u8(0)))
    write(n, "unknown-type", block_seed(0, 8, request(99, 0, [hdr, status]) + u8(B_PROCESS) + u8(0)))
    write(n, "no-status", block_seed(0, 8,
          request(T_IN, 0, [hdr, desc(0x1000, 512)]) + u8(B_PROCESS) + u8(0)))
    write(n, "short-header", block_seed(0, 8,
          request(T_IN, 0, [desc(0x100, 8), desc(0x1000, 512, True), status]) + u8(B_PROCESS) +
          u8(0)))
    write(n, "split-header", block_seed(0, 8,
          request(T_OUT, 1, [desc(0x100, 4), desc(0x104, 12), desc(0x1000, 512), status]) +
          u8(B_PROCESS) + u8(0)))
    write(n, "data-and-status-in-one", block_seed(0, 8,
          request(T_IN, 0, [hdr, desc(0x1000, 513, True)]) + u8(B_PROCESS) + u8(0)))
    # The driver rewrites header, data pointers and status after the parse.
    write(n, "racing-rewrite", block_seed(0, 64,
          request(T_OUT, 2, [hdr, desc(0x1000, 1024), status]) + u8(B_RACING) + u8(2) +
          mutate(0x100, header(T_IN, 60)) + mutate(0x7000, u64(0xffff0000))))
    ind = table([(0x100, 16, NEXT, 1), (0x1000, 4096, WRITE | NEXT, 2), (0x600, 1, WRITE, 0)])
    write(n, "indirect-read", block_seed(0, 64,
          u8(B_MUTATE) + mutate(0x100, header(T_IN, 0)) + u8(B_MUTATE) + mutate(0x5000, ind) +
          u8(B_POST) + chain(0, [desc(0x5000, len(ind), indirect=True)]) + u8(B_PROCESS) + u8(0)))
    write(n, "parse-only", block_seed(0, 8,
          request(T_DISCARD, 0, [desc(0x100, 24), status], extra=u64(0)) + u8(B_PARSE)))


# ---- mmio_fuzz.hpp ----
M_READ, M_WRITE, M_INIT, M_POST, M_NOTIFY, M_MUTATE, M_RUN, M_HOST, M_RESET, M_ACK = range(10)
ALL = 0xffffffffffffffff


def m_read(reg, size_sel=0):
    return u8(M_READ) + u8(reg // 4) + u8(size_sel)


def m_write(reg, value, size_sel=0):
    return u8(M_WRITE) + u8(reg // 4) + u8(size_sel) + u64(value)


def m_init(queues, size_exp=4, mask=ALL, steps=0, ready=True):
    return u8(M_INIT) + u8(steps) + u64(mask) + (u8(size_exp | (0 if ready else 0x80))) * queues


def ring(q):
    base = 0x1000 + 0x3000 * q
    return base, base + 0x1000, base + 0x2000


def m_chain(q, first, descs):
    return u8(M_POST) + u8(q) + chain(first, descs)


def run_and_ack():
    return u8(M_RUN) + u8(M_ACK) + u8(M_RUN)


def probe_registers():
    """Every register slot read, config bytes read at every width."""
    ops = b"".join(m_read(r) for r in range(0, 0x100, 4))
    ops += b"".join(u8(M_READ) + u8(0x40 + off) + u8(sel) for off in (0, 4, 8, 12) for sel in (1, 2, 3, 4))
    return ops


def mmio_seed(cfg, params, ops):
    return u8(cfg) + params + sized(b"") + ops


def mmio_block_corpus():
    n = "mmio_block"
    p = u16(64)
    write(n, "probe", mmio_seed(0, p, probe_registers()))
    write(n, "bad-status-steps", mmio_seed(0, p,
          m_write(0x70, 1) + m_write(0x70, 15) + m_read(0x70) + m_write(0x70, 3) +
          m_write(0x20, 0xffffffff) + m_write(0x70, 11) + m_read(0x70) + u8(M_RESET)))
    hdr_in = u8(M_MUTATE) + mutate(0x9000, header(T_IN, 1))
    req = [desc(0x9000, 16), desc(0xa000, 512, True), desc(0x9100, 1, True)]
    for cfg, name in ((0, "read-sync"), (8, "read-async")):
        write(n, name, mmio_seed(cfg, p,
              m_init(1) + hdr_in + m_chain(0, 0, req) + u8(M_NOTIFY) + u8(0) + run_and_ack() +
              m_read(0x60) + u8(M_RESET)))
    out = u8(M_MUTATE) + mutate(0x9000, header(T_OUT, 2))
    write(n, "write-flush-async", mmio_seed(8, p,
          m_init(1) + out + m_chain(0, 0, [desc(0x9000, 16), desc(0xa000, 1024), desc(0x9100, 1, True)]) +
          u8(M_NOTIFY) + u8(0) + u8(M_RUN) +
          u8(M_MUTATE) + mutate(0x9200, header(T_FLUSH)) +
          m_chain(0, 3, [desc(0x9200, 16), desc(0x9101, 1, True)]) + u8(M_NOTIFY) + u8(0) + u8(M_RUN)))
    bucket = u8(1) + u16(1024) + u16(0) + u8(2)
    write(n, "rate-limited", mmio_seed(16, p + bucket + bucket,
          m_init(1) + hdr_in + m_chain(0, 0, req) + m_chain(0, 3, req) + u8(M_NOTIFY) + u8(0) +
          u8(M_RUN) + u8(M_RUN)))
    write(n, "swap-disk", mmio_seed(0, p,
          m_init(1) + hdr_in + m_chain(0, 0, req) + u8(M_NOTIFY) + u8(0) + u8(M_RUN) +
          u8(M_HOST) + u8(1) + u16(128) + u8(0) + m_read(0x100) + m_read(0xfc)))
    write(n, "limits-update", mmio_seed(0, p,
          m_init(1) + u8(M_HOST) + u8(0) + bucket + bucket + hdr_in + m_chain(0, 0, req) +
          u8(M_NOTIFY) + u8(0) + u8(M_RUN)))
    write(n, "queue-not-ready", mmio_seed(0, p, m_init(1, ready=False) + m_read(0x70)))
    write(n, "malformed-ring", mmio_seed(0, p,
          m_init(1) + m_chain(0, 0, [raw_desc(0x9000, 16, NEXT, 0)]) + u8(M_NOTIFY) + u8(0) +
          u8(M_RUN) + m_read(0x70) + u8(M_RESET) + m_init(1)))


def mmio_net_corpus():
    n = "mmio_net"
    frame = bytes(12) + bytes.fromhex("ffffffffffff0600ac10000208060001") + bytes(44)
    tx = (u8(M_MUTATE) + mutate(0x9000, frame) +
          m_chain(1, 0, [desc(0x9000, len(frame))]) + u8(M_NOTIFY) + u8(1) + u8(M_RUN))
    rx = (m_chain(0, 0, [desc(0xa000, 2048, True)]) + m_chain(0, 1, [desc(0xb000, 2048, True)]) +
          u8(M_NOTIFY) + u8(0) + u8(M_HOST) + u8(0) + sized(frame) + u8(M_RUN) + u8(M_ACK))
    write(n, "probe", mmio_seed(4, b"", probe_registers()))
    write(n, "tx", mmio_seed(4, b"", m_init(2) + tx + u8(M_HOST) + u8(1)))
    write(n, "rx", mmio_seed(4, b"", m_init(2) + rx))
    write(n, "offloads", mmio_seed(4 | 8, b"", m_init(2) + tx + rx))
    bucket = u8(1) + u16(100) + u16(0) + u8(1)
    write(n, "rate-limited", mmio_seed(16, bucket * 4, m_init(2) + tx + tx + rx + rx))
    write(n, "tx-too-short", mmio_seed(0, b"",
          m_init(2) + m_chain(1, 0, [desc(0x9000, 4)]) + u8(M_NOTIFY) + u8(1) + u8(M_RUN)))


def mmio_console_corpus():
    n = "mmio_console"
    tx = (u8(M_MUTATE) + mutate(0x9000, b"hello from the guest\n") +
          m_chain(1, 0, [desc(0x9000, 21)]) + u8(M_NOTIFY) + u8(1) + u8(M_RUN))
    rx = (m_chain(0, 0, [desc(0xa000, 64, True)]) + u8(M_NOTIFY) + u8(0) +
          u8(M_HOST) + u8(0) + sized(b"ls -l\n") + u8(M_RUN) + u8(M_RUN))
    write(n, "probe", mmio_seed(0, b"", probe_registers()))
    write(n, "pipes", mmio_seed(0, b"", m_init(2) + tx + rx + u8(M_HOST) + u8(1)))
    write(n, "socket", mmio_seed(4, b"", m_init(2) + tx + rx))
    write(n, "input-eof", mmio_seed(0, b"", m_init(2) + rx + u8(M_HOST) + u8(2) + rx))
    write(n, "no-input", mmio_seed(8, b"", m_init(2) + tx + rx))
    write(n, "output-only-queue", mmio_seed(0, b"",
          u8(M_INIT) + u8(0) + u64(ALL) + u8(0x84) + u8(4) + tx))


def mmio_rng_corpus():
    n = "mmio_rng"
    req = (m_chain(0, 0, [desc(0xa000, 64, True)]) + m_chain(0, 1, [desc(0xa100, 16, True), desc(0xa200, 16, True)]) +
           u8(M_NOTIFY) + u8(0) + u8(M_RUN) + u8(M_ACK))
    write(n, "probe", mmio_seed(0, b"", probe_registers()))
    write(n, "requests", mmio_seed(0, b"", m_init(1) + req))
    write(n, "source-fails", mmio_seed(0, b"", m_init(1) + u8(M_HOST) + u8(1) + u8(3) + req +
                                       u8(M_HOST) + u8(1) + u8(1) + req))
    bucket = u8(1) + u16(32) + u16(0) + u8(1)
    write(n, "rate-limited", mmio_seed(4, bucket + bucket, m_init(1) + req + req))
    write(n, "readable-descriptor", mmio_seed(0, b"",
          m_init(1) + m_chain(0, 0, [desc(0xa000, 64)]) + u8(M_NOTIFY) + u8(0) + u8(M_RUN)))


# ---- net_fuzz.cpp ----
N_POST_RX, N_POST_TX, N_TX_FRAME, N_RX_BUFFERS, N_INJECT, N_NOTIFY_RX, N_NOTIFY_TX, N_RUN, N_DRAIN, \
    N_MUTATE, N_LIMITS, N_RESET = range(12)
CSUM, GUEST_CSUM, MAC, HOST_TSO4, MRG_RXBUF, STATUS = 1 << 0, 1 << 1, 1 << 5, 1 << 11, 1 << 15, 1 << 16
EVENT_IDX = 1 << 29


def net_seed(cfg, accept, ops, limits=b"", rx_exp=4, tx_exp=4):
    return u8(cfg) + limits + u64(accept) + u8(rx_exp) + u8(tx_exp) + sized(b"") + ops


def tx_frame(payload, hdr=bytes(12), split=False):
    return u8(N_TX_FRAME) + u16(0x100) + hdr + sized(payload) + u8(1 if split else 0)


def rx_buffers(bufs):
    return u8(N_RX_BUFFERS) + u8(len(bufs) - 1) + b"".join(u16(a) + u16(l) for a, l in bufs)


def inject(frame):
    return u8(N_INJECT) + sized(frame)


def net_corpus():
    n = "net"
    eth = bytes.fromhex("ffffffffffff0600ac1000020800") + bytes(50)
    write(n, "tx", net_seed(4, ALL, tx_frame(eth) + u8(N_NOTIFY_TX) + u8(N_RUN) + u8(N_DRAIN)))
    write(n, "tx-split", net_seed(4, ALL, tx_frame(eth, split=True) + tx_frame(eth, split=True) +
                                  u8(N_NOTIFY_TX) + u8(N_RUN) + u8(N_DRAIN)))
    csum_hdr = bytes([1, 0]) + bytes(10)
    write(n, "tx-csum-not-negotiated", net_seed(0, 0, tx_frame(eth, hdr=csum_hdr) + u8(N_NOTIFY_TX) + u8(N_RUN)))
    gso_hdr = bytes([1, 1]) + u16(54) + u16(1448) + u16(34) + u16(16) + u16(0)
    write(n, "tx-tso", net_seed(8, CSUM | HOST_TSO4 | EVENT_IDX, tx_frame(eth, hdr=gso_hdr) +
                                u8(N_NOTIFY_TX) + u8(N_RUN) + u8(N_DRAIN)))
    write(n, "rx", net_seed(4, ALL & ~MRG_RXBUF, rx_buffers([(0x8000, 2048), (0x9000, 2048)]) +
                            u8(N_NOTIFY_RX) + inject(bytes(12) + eth) + u8(N_RUN)))
    write(n, "rx-mergeable", net_seed(4, ALL, rx_buffers([(0x8000, 64), (0x8100, 64), (0x8200, 64), (0x8300, 64)]) +
                                      u8(N_NOTIFY_RX) + inject(bytes(12) + eth * 3) + u8(N_RUN)))
    write(n, "rx-no-buffers", net_seed(0, ALL, inject(bytes(12) + eth) + u8(N_RUN) +
                                       rx_buffers([(0x8000, 1514)]) + u8(N_NOTIFY_RX) + u8(N_RUN)))
    write(n, "rx-runt", net_seed(0, ALL, rx_buffers([(0x8000, 2048)]) + inject(bytes(4)) + u8(N_RUN)))
    write(n, "rx-buffer-too-small", net_seed(0, ALL, rx_buffers([(0x8000, 8)]) + inject(bytes(12) + eth) + u8(N_RUN)))
    bucket = u8(1) + u16(200) + u16(0) + u8(1)
    write(n, "rate-limited", net_seed(16, ALL, tx_frame(eth) + tx_frame(eth) + tx_frame(eth) + u8(N_NOTIFY_TX) +
                                      u8(N_RUN) + rx_buffers([(0x8000, 2048), (0x9000, 2048)]) +
                                      inject(bytes(12) + eth) + inject(bytes(12) + eth) + u8(N_RUN) +
                                      u8(N_LIMITS) + u8(0) + u8(0) + u8(0) + u8(N_RUN),
                                      limits=bucket * 4))
    write(n, "reset", net_seed(4, ALL, tx_frame(eth) + u8(N_NOTIFY_TX) + u8(N_RESET) + tx_frame(eth) +
                               u8(N_NOTIFY_TX) + u8(N_RUN) + u8(N_DRAIN)))
    write(n, "malformed-tx-ring", net_seed(0, ALL, u8(N_POST_TX) + chain(0, [raw_desc(0x100, 60, NEXT, 0)]) +
                                           u8(N_NOTIFY_TX) + u8(N_RUN)))


# ---- rate_limiter_fuzz.cpp ----
R_CONSUME, R_READY, R_WAIT, R_UPDATE, R_ADVANCE, R_FAR, R_BACK = range(7)


def bucket_params(size, burst, refill_ms):
    return u64(size) + u64(burst) + u64(refill_ms)


def amount16(v):
    return u8(0) + u16(v)


def rate_limiter_corpus():
    n = "rate_limiter"
    start = u64(1_000_000_000_000)
    ops = (u8(R_CONSUME) + amount16(1000) + u8(1)) * 3 + u8(R_WAIT) + amount16(1000) + u8(1)
    write(n, "bandwidth", u8(1) + bucket_params(1000, 0, 100) + start + ops)
    write(n, "ops", u8(2) + bucket_params(10, 5, 1000) + start +
          (u8(R_CONSUME) + amount16(0) + u8(1)) * 16 + u8(R_READY) + amount16(0) + u8(1) +
          u8(R_ADVANCE) + u32(500_000_000) + u8(R_CONSUME) + amount16(0) + u8(1))
    write(n, "both-with-burst", u8(3) + bucket_params(4096, 8192, 10) + bucket_params(4, 2, 10) + start +
          (u8(R_CONSUME) + amount16(3000) + u8(1)) * 6 + u8(R_WAIT) + amount16(3000) + u8(1))
    write(n, "oversized-request", u8(1) + bucket_params(100, 0, 100) + start +
          u8(R_CONSUME) + amount16(1000) + u8(1) + u8(R_WAIT) + amount16(1) + u8(1) +
          u8(R_WAIT) + amount16(1000) + u8(1))
    write(n, "huge-values", u8(3) + bucket_params(2**64 - 1, 2**64 - 1, 2**64 - 1) +
          bucket_params(2**63, 0, 1) + start +
          u8(R_CONSUME) + u8(0xff) + u64(2**64 - 1) + u8(3) + u8(R_WAIT) + u8(0xff) + u64(2**64 - 1) + u8(3) +
          u8(R_FAR) + u64(2**61))
    write(n, "time-backwards", u8(1) + bucket_params(1000, 0, 100) + start +
          u8(R_CONSUME) + amount16(1000) + u8(1) + u8(R_BACK) + u32(50_000_000) +
          u8(R_CONSUME) + amount16(500) + u8(1) + u8(R_WAIT) + amount16(500) + u8(1))
    write(n, "update", u8(1) + bucket_params(1000, 0, 100) + start +
          u8(R_CONSUME) + amount16(1000) + u8(1) + u8(R_UPDATE) + u8(2) + bucket_params(1, 0, 1) +
          u8(R_CONSUME) + amount16(1000) + u8(1) + u8(R_UPDATE) + u8(0) + u8(R_CONSUME) + amount16(1) + u8(1))
    write(n, "unlimited", u8(0) + start + u8(R_CONSUME) + amount16(65535) + u8(3))


def main():
    queue_corpus()
    block_corpus()
    mmio_block_corpus()
    mmio_net_corpus()
    mmio_console_corpus()
    mmio_rng_corpus()
    net_corpus()
    rate_limiter_corpus()


if __name__ == "__main__":
    main()
