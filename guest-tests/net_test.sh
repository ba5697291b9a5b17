#!/usr/bin/env bash
# virtio-net guest test: in a network namespace of its own, a TAP device
# 172.30.0.1/24 is the host end; the guest (172.30.0.2, a fixed MAC) pings it
# and fetches 16 MiB of random bytes over TCP (HTTP) from a server on it,
# whose checksum must match. Needs /dev/kvm and root:
# run through scripts/kvm-run. Exit 0 = pass.
set -u
: "${HVZ_BINARY:?}" "${HVZ_GUEST_IMAGES:?}"
if [ "${HVZ_NET_TEST_IN_NS:-}" != 1 ]; then
    HVZ_NET_TEST_IN_NS=1 exec unshare --net -- "$0" "$@"
fi
fail() { echo "FAIL: $*"; [ -f "${work:-}/out" ] && tail -n 30 "$work/out"; exit 1; }

work=$(mktemp -d /tmp/hvz-net.XXXXXX)
trap 'kill %1 2>/dev/null; wait; rm -rf "$work"' EXIT
. "$(dirname "$0")/tap_server.sh"
tap_server hvztap0 172.30.0.1

mac=06:00:ac:1e:00:02
cat >"$work/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$HVZ_GUEST_IMAGES/vmlinuz",
                 "initrd_path": "$HVZ_GUEST_IMAGES/initramfs.cpio.gz",
                 "boot_args": "console=ttyS0 reboot=k panic=1 pci=off quiet hvz.action=net hvz.ip=172.30.0.2 hvz.peer=172.30.0.1"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "hvztap0", "guest_mac": "$mac"}]}
JSON
start=$SECONDS
timeout 300 "$HVZ_BINARY" --config-file "$work/vm.json" >"$work/out" 2>&1
rc=$?
echo "boot (net): exit $rc in $((SECONDS - start)) s"
[ "$rc" -eq 0 ] || fail "hvz exited $rc"
grep -q "hvz-guest: mac $mac" "$work/out" || fail "guest MAC is not $mac"
grep -q "hvz-guest: ping ok" "$work/out" || fail "the guest could not ping the host end"
grep -q "hvz-guest: tcp sha256 $want" "$work/out" ||
    fail "the 16 MiB the guest fetched over TCP do not match (want $want)"
echo "PASS: ping and 16 MiB over TCP between the guest and its TAP"
