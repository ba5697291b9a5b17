#!/usr/bin/env bash
# Every device kind at once, boot to power-off: a root drive on the Sync
# engine, a second drive on the Async (io_uring) engine, a network interface
# on a TAP in a namespace of its own (ping and 16 MiB over TCP from a server
# there), a virtio-console to a file and a virtio-rng. The guest uses each
# (hvz.action=devices) and powers off; hvz must exit 0 with no sanitizer
# report (the suite runs this with the ASan/UBSan build too). Needs
# /dev/kvm and root: run through scripts/kvm-run. Exit 0 = pass.
set -u
: "${HVZ_BINARY:?}" "${HVZ_GUEST_IMAGES:?}"
if [ "${HVZ_DEVICES_TEST_IN_NS:-}" != 1 ]; then
    HVZ_DEVICES_TEST_IN_NS=1 exec unshare --net -- "$0" "$@"
fi
fail() { echo "FAIL: $*"; [ -f "${work:-}/out" ] && tail -n 30 "$work/out"; exit 1; }

# Images on a tmpfs when there is one (the emulated host's /tmp is 9p).
base=/dev/shm
[ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/hvz-devices.XXXXXX")
trap 'kill %1 2>/dev/null; wait; rm -rf "$work"' EXIT
. "$(dirname "$0")/tap_server.sh"
tap_server hvztap1 172.31.0.1
cp "$HVZ_GUEST_IMAGES/rootfs.ext4" "$work/root.ext4"
head -c $((8 << 20)) /dev/zero >"$work/data.img"

cat >"$work/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$HVZ_GUEST_IMAGES/vmlinuz",
                 "initrd_path": "$HVZ_GUEST_IMAGES/initramfs.cpio.gz",
                 "boot_args": "console=ttyS0 reboot=k panic=1 pci=off quiet hvz.action=devices hvz.ip=172.31.0.2 hvz.peer=172.31.0.1"},
 "machine-config": {"vcpu_count": 2, "mem_size_mib": 256},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$work/root.ext4", "is_root_device": true,
             "is_read_only": false, "io_engine": "Sync"},
            {"drive_id": "data", "path_on_host": "$work/data.img", "is_root_device": false,
             "is_read_only": false, "io_engine": "Async"}],
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "hvztap1"}],
 "console": {"mode": "file", "path": "$work/hvc0.log"},
 "entropy": {}}
JSON
start=$SECONDS
timeout 300 "$HVZ_BINARY" --config-file "$work/vm.json" >"$work/out" 2>&1
rc=$?
echo "boot (every device kind): exit $rc in $((SECONDS - start)) s"
grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$work/out" && fail "sanitizer report"
[ "$rc" -eq 0 ] || fail "hvz exited $rc"
grep -q "hvz-guest: rootfs /dev/vda" "$work/out" || fail "the root is not on /dev/vda"
grep -q "hvz-guest: drive vdb sectors 16384" "$work/out" || fail "the second drive is missing"
grep -q "hvz-guest: vdb read ok" "$work/out" || fail "reading the Async drive failed"
grep -q "hvz-guest: hwrng virtio_rng" "$work/out" || fail "virtio-rng is not the guest's hwrng"
grep -q "hvz-guest: hwrng read ok" "$work/out" || fail "reading /dev/hwrng failed"
grep -q "hvz-guest: wrote hvc0" "$work/out" || fail "writing hvc0 failed"
grep -q "hvz-guest: hello over hvc0" "$work/hvc0.log" || fail "hvc0 output is not in its file"
grep -q "hvz-guest: ping ok" "$work/out" || fail "the guest could not ping the host end"
grep -q "hvz-guest: tcp sha256 $want" "$work/out" || fail "the 16 MiB fetched over TCP do not match"
echo "PASS: block (Sync and Async), net, console and rng in one guest, power-off, exit 0"
