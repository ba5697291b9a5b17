#!/usr/bin/env python3
"""Writes the seed corpus of the kernel loader fuzz harness
(corpus/boot_loader/).

Each seed is a small but well-formed kernel image — a bzImage with a boot
protocol 2.15 setup header, or an ELF64 vmlinux with PT_LOAD segments and
the Xen PVH entry note — plus the memory size, command line and initrd the
harness takes (format: see boot_loader_fuzz.cpp), and variants a loader
must refuse. Usage: make_corpus.py [OUTDIR] (default: corpus/ beside this
script).
"""
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
MIB = 1 << 20
UNIT = 64 * 1024


def u8(v): return struct.pack("<B", v & 0xff)
def u16(v): return struct.pack("<H", v & 0xffff)
def u64(v): return struct.pack("<Q", v & 0xffffffffffffffff)


def put(buf, off, fmt, value):
    struct.pack_into("<" + fmt, buf, off, value)


def bzimage(pm_size=4096, init_size=64 * 1024, version=0x020f, setup_sects=1, xloadflags=1,
            loadflags=1, initrd_addr_max=0x7fffffff, cmdline_size=2048, syssize=None,
            jump=0x6a, payload=(0, 0), truncate=None):
    """A bzImage: setup sectors with the header at 0x1f1, then the
    protected-mode kernel."""
    setup = (setup_sects or 4) + 1
    img = bytearray(setup * 512 + pm_size)
    put(img, 0x1f1, "B", setup_sects)
    put(img, 0x1f4, "I", syssize if syssize is not None else (pm_size + 15) // 16)
    put(img, 0x1fe, "H", 0xaa55)
    img[0x200] = 0xeb
    img[0x201] = jump
    img[0x202:0x206] = b"HdrS"
    put(img, 0x206, "H", version)
    put(img, 0x211, "B", loadflags)
    put(img, 0x22c, "I", initrd_addr_max)
    put(img, 0x230, "I", 0x200000)
    put(img, 0x236, "H", xloadflags)
    put(img, 0x238, "I", cmdline_size)
    put(img, 0x248, "I", payload[0])
    put(img, 0x24c, "I", payload[1])
    put(img, 0x260, "I", init_size)
    # Something recognisable at startup_64 (0x200 into the kernel).
    img[setup * 512:setup * 512 + 4] = b"\xfa\xfc\xeb\xfe"
    data = bytes(img)
    return data[:truncate] if truncate is not None else data


def elf(segments, entry=0x100000, pvh=None, pvh_size=8, phentsize=56, extra_notes=b""):
    """An ELF64 x86_64 executable: `segments` are (paddr, filesz, memsz),
    their contents follow the headers; `pvh` adds the Xen PHYS32_ENTRY
    note."""
    notes = extra_notes
    if pvh is not None:
        desc = struct.pack("<Q" if pvh_size == 8 else "<I", pvh)
        notes += struct.pack("<III", 4, len(desc), 18) + b"Xen\0" + desc
    phnum = len(segments) + (1 if notes else 0)
    ehsize, phoff = 64, 64
    data_off = phoff + phnum * phentsize
    phdrs = b""
    body = b""
    for paddr, filesz, memsz in segments:
        off = data_off + len(body)
        phdrs += struct.pack("<IIQQQQQQ", 1, 5, off, paddr | 0xffffffff80000000, paddr, filesz, memsz, 0x1000)
        phdrs += bytes(phentsize - 56)
        body += bytes([0x90]) * filesz
    if notes:
        off = data_off + len(body)
        phdrs += struct.pack("<IIQQQQQQ", 4, 4, off, 0, 0, len(notes), len(notes), 4)
        phdrs += bytes(phentsize - 56)
        body += notes
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, entry, phoff, 0, 0, ehsize, phentsize, phnum, 64, 0, 0)
    return ehdr + phdrs + body


def seed(name, image, mem_units=16, cmdline=b"console=ttyS0 reboot=k panic=1 pci=off", initrd=None,
         second=None, limit=None):
    cfg = (1 if second else 0) | (2 if initrd is not None else 0) | (4 if limit is not None else 0)
    data = u8(cfg) + u16(mem_units)
    if second:
        data += u16(second[0]) + u16(second[1])
    data += u16(len(cmdline)) + cmdline
    if initrd is not None:
        data += u16(len(initrd)) + initrd
    if limit is not None:
        data += u64(limit)
    data += image
    d = os.path.join(OUT, "boot_loader")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    initrd = b"070701" + bytes(506)  # the start of a newc cpio archive
    seed("bzimage", bzimage())
    seed("bzimage-initrd", bzimage(), initrd=initrd)
    seed("bzimage-initrd-low-limit", bzimage(initrd_addr_max=0x120fff), initrd=initrd)
    seed("bzimage-initrd-explicit-limit", bzimage(), initrd=initrd, limit=2**64 - 1)
    seed("bzimage-two-regions", bzimage(), initrd=initrd, second=(4, 2))
    seed("bzimage-init-size-too-big", bzimage(init_size=64 * MIB))
    seed("bzimage-protocol-2.06", bzimage(version=0x0206))
    seed("bzimage-protocol-2.11", bzimage(version=0x020b))
    seed("bzimage-not-64-bit", bzimage(xloadflags=0))
    seed("bzimage-zimage", bzimage(loadflags=0))
    seed("bzimage-setup-sects-0", bzimage(setup_sects=0))
    seed("bzimage-truncated-syssize", bzimage(syssize=0x10000))
    seed("bzimage-truncated-header", bzimage(truncate=0x240))
    seed("bzimage-short-header-jump", bzimage(jump=0x10))
    seed("bzimage-payload-outside", bzimage(payload=(0x100, 0xffffff00)))
    seed("bzimage-cmdline-too-long", bzimage(cmdline_size=8), cmdline=b"console=ttyS0 quiet")
    seed("bzimage-tiny-kernel", bzimage(pm_size=16, init_size=0))
    seed("bzimage-cmdline-nul", bzimage(), cmdline=b"root=/dev/vda\0rw")
    seg = [(0x100000, 0x200, 0x3000)]
    seed("elf-pvh", elf(seg, pvh=0x100010))
    seed("elf-pvh-4-byte-note", elf(seg, pvh=0x100020, pvh_size=4), initrd=initrd)
    seed("elf-linux64", elf(seg), initrd=initrd)
    seed("elf-segments", elf([(0x100000, 0x100, 0x100), (0x200000, 0x80, 0x1000), (0x300000, 0, 0)], entry=0x200010,
                             pvh=0x200000), mem_units=48)
    seed("elf-segment-below-1mib", elf([(0x1000, 0x100, 0x100)], entry=0x1000))
    seed("elf-entry-outside", elf(seg, entry=0x400000))
    seed("elf-pvh-above-4g", elf(seg, pvh=0x1_0000_0000))
    seed("elf-segment-past-ram", elf([(0x100000, 0x10, 32 * MIB)]))
    seed("elf-big-phentsize", elf(seg, phentsize=64, pvh=0x100000))
    other_note = struct.pack("<III", 5, 4, 1) + b"GNU\0\0\0\0" + b"abcd"
    seed("elf-other-notes", elf(seg, pvh=0x100000, extra_notes=other_note))
    seed("elf-truncated-note", elf(seg, extra_notes=struct.pack("<III", 4, 64, 18) + b"Xen\0"))
    seed("not-a-kernel", b"MZ" + bytes(1000))


if __name__ == "__main__":
    main()
