#!/usr/bin/env python3
"""Writes the seed corpus of the PIO devices fuzz harness (corpus/pio/).

Each seed is a port access sequence a guest really makes (Linux's 8250
probe, i8042 self-test and reboot, reading the RTC in BCD and binary,
ACPI power-off) or a bus edit, in the format pio_fuzz.cpp decodes. Usage:
make_corpus.py [OUTDIR] (default: corpus/ beside this script).
"""
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

READ, WRITE, SERIAL_INPUT, CTRL_ALT_DEL, CLOCK, INSERT, REMOVE = range(7)
BASES = {0x3f8: (0, 9), 0x60: (1, 6), 0x70: (2, 3), 0x600: (3, 4)}


def u8(v): return struct.pack("<B", v & 0xff)
def u16(v): return struct.pack("<H", v & 0xffff)
def u64(v): return struct.pack("<Q", v & 0xffffffffffffffff)


def port(p):
    """The selector byte pio_fuzz.cpp decodes as port `p` (device base +
    offset), or a raw 64-bit address."""
    for base, (which, span) in BASES.items():
        if base <= p < base + span:
            for sel in range(256):
                if sel % 6 == which and (sel >> 3) % span == p - base:
                    return u8(sel)
    return u8(5) + u64(p)


def rd(p, size=1):
    return u8(READ) + port(p) + u8({1: 0, 2: 3, 4: 4}[size])


def wr(p, value, size=1):
    return u8(WRITE) + port(p) + u8({1: 0, 2: 3, 4: 4}[size]) + u64(value)


def seed(name, ops, clock=1_700_000_000):
    d = os.path.join(OUT, "pio")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(u64(clock) + ops)


COM1 = 0x3f8


def main():
    # Linux 8250: scratch test, IER probe, loopback test, FIFO autodetect.
    seed("serial-probe", wr(COM1 + 7, 0x55) + rd(COM1 + 7) + wr(COM1 + 1, 0) + rd(COM1 + 1) +
         wr(COM1 + 4, 0x1a) + rd(COM1 + 6) + wr(COM1 + 4, 0x0b) + wr(COM1 + 2, 0x07) +
         rd(COM1 + 2) + wr(COM1 + 3, 0xbf) + rd(COM1 + 2) + wr(COM1 + 3, 0x03))
    # Baud divisor through DLAB, then THRE interrupt and output.
    seed("serial-setup-and-write", wr(COM1 + 3, 0x83) + wr(COM1, 0x01) + wr(COM1 + 1, 0x00) +
         wr(COM1 + 3, 0x03) + wr(COM1 + 1, 0x02) + rd(COM1 + 2) + b"".join(wr(COM1, c) for c in b"hvz\n") +
         rd(COM1 + 5) + rd(COM1 + 2))
    seed("serial-input", wr(COM1 + 1, 0x05) + u8(SERIAL_INPUT) + u16(100) + bytes(range(100)) +
         rd(COM1 + 2) + rd(COM1 + 5) + b"".join(rd(COM1) for _ in range(70)) + rd(COM1 + 5))
    seed("serial-loopback-overrun", wr(COM1 + 4, 0x10) + b"".join(wr(COM1, i) for i in range(66)) +
         rd(COM1 + 5) + rd(COM1 + 5) + rd(COM1) + wr(COM1 + 2, 0x03) + rd(COM1 + 5))
    seed("serial-wide-access", rd(COM1, 4) + wr(COM1 + 4, 0x1f, 2) + rd(COM1 + 6, 2) + rd(COM1 + 7, 4))
    # i8042: self-test, CTR read/write, keyboard command, reboot.
    seed("i8042-probe", wr(0x64, 0xaa) + rd(0x64) + rd(0x60) + wr(0x64, 0x20) + rd(0x60) +
         wr(0x64, 0x60) + wr(0x60, 0x47) + wr(0x64, 0xab) + rd(0x60) + wr(0x64, 0xa9) + rd(0x60) +
         wr(0x60, 0xff) + rd(0x60) + rd(0x60))
    seed("i8042-reset", wr(0x64, 0xd1) + wr(0x60, 0x02) + wr(0x64, 0xd0) + rd(0x60) + wr(0x64, 0xfe))
    seed("i8042-ctrl-alt-del", u8(CTRL_ALT_DEL) + b"".join(rd(0x64) + rd(0x60) for _ in range(5)) +
         u8(CTRL_ALT_DEL) + u8(CTRL_ALT_DEL) + u8(CTRL_ALT_DEL) + u8(CTRL_ALT_DEL) + u8(CTRL_ALT_DEL))
    seed("i8042-write-buffers", wr(0x64, 0xd2) + wr(0x60, 0x1c) + rd(0x60) + wr(0x64, 0xd3) +
         wr(0x60, 0x1d) + rd(0x60) + wr(0x64, 0xd4) + wr(0x60, 0xf4) + rd(0x60))
    # CMOS: the time in BCD and 24-hour mode, then binary and 12-hour.
    time_regs = b"".join(wr(0x70, r) + rd(0x71) for r in (0, 2, 4, 6, 7, 8, 9, 0x32, 0x0a, 0x0b, 0x0c, 0x0d))
    seed("cmos-time-bcd", time_regs)
    seed("cmos-time-binary-12h", wr(0x70, 0x0b) + wr(0x71, 0x04) + time_regs + wr(0x70, 0x0b) +
         wr(0x71, 0x00) + time_regs, clock=1_700_050_000)
    seed("cmos-far-future", time_regs, clock=2**63 - 1)
    seed("cmos-before-epoch", time_regs, clock=2**64 - 86400)
    seed("cmos-ram", wr(0x70, 0x8f) + rd(0x70) + wr(0x71, 0xab) + rd(0x71) + wr(0x70, 0x7f) +
         wr(0x71, 0x12) + rd(0x71) + wr(0x70, 0x0a) + wr(0x71, 0xff) + rd(0x71) + u8(CLOCK) + u64(0) +
         wr(0x70, 0) + rd(0x71))
    # ACPI: S5 power-off and the reset register.
    seed("acpi-poweroff", rd(0x600) + rd(0x601) + wr(0x602, 0x01) + wr(0x600, (5 << 2) | (1 << 5)) +
         wr(0x600, 0x20, 2))
    # Bus edits: extra ranges next to, over and around the devices.
    seed("bus-insert-remove", u8(INSERT) + u64(0x3f0) + u64(8) + u8(INSERT) + u64(0x3f4) + u64(8) +
         u8(INSERT) + u64(0x1000) + u64(0x100) + u8(READ) + u8(4) + u8(0) + u64(0x10) + u8(0) +
         u8(WRITE) + u8(4) + u8(1) + u64(0xff) + u8(3) + u64(0x1234) + u8(REMOVE) + u8(0) + rd(0x1000) +
         u8(INSERT) + u64(2**64 - 16) + u64(16) + u8(INSERT) + u64(2**64 - 16) + u64(17) +
         u8(INSERT) + u64(0) + u64(0) + rd(2**64 - 1) + rd(2**64 - 2, 2))


if __name__ == "__main__":
    main()
