#!/usr/bin/env bash
# Quiesce test: PATCH /vm Paused must leave nothing running that touches
# guest memory or device state. The guest (hvz.action=traffic) keeps both
# data drives (Sync and Async engines, rate limited so that requests are
# always waiting) and the network busy; twice, the test
# pauses it and then, one second apart, takes a checksum of guest RAM (read
# from outside through /proc/PID/mem), of both disk images and the TAP's
# count of frames from the guest; each pair must be equal, and the metrics
# flushed over that second must show no block, net or vCPU work. After
# Resumed the guest's traffic goes on. Needs /dev/kvm and root: run through
# scripts/kvm-run. Exit 0 = pass.
set -u
: "${HVZ_BINARY:?}" "${HVZ_GUEST_IMAGES:?}"
if [ "${HVZ_QUIESCE_TEST_IN_NS:-}" != 1 ]; then
    HVZ_QUIESCE_TEST_IN_NS=1 exec unshare --net -- "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
gt_init quiesce
gt_logs=("$work/out")
gt_cleanup_hook() {
    kill %1 2>/dev/null
    wait 2>/dev/null
}
count() { grep -ao 'hvz-guest: traffic [0-9]*' "$work/out" | tail -n 1 | awk '{print $3}'; }
wait_count() {  # wait_count N: until the guest finished traffic round N
    for _ in $(seq 600); do
        alive
        local c
        c=$(count)
        [ -n "$c" ] && [ "$c" -ge "$1" ] && return 0
        sleep 0.5
    done
    fail "the guest's traffic did not reach round $1 (last: $(count))"
}
mem_mib=256
# Guest RAM is the one mapping of exactly its size that hvz keeps out of
# forks (VmFlags "dc", see GuestMemory::create); its checksum is read from
# outside, through /proc/PID/mem.
ram_sum() {
    /usr/bin/python3 - "$hvz_pid" $((mem_mib << 20)) <<'PY'
import hashlib, re, sys
pid, size = int(sys.argv[1]), int(sys.argv[2])
found, span = [], None
with open(f"/proc/{pid}/smaps") as f:
    for line in f:
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
        if m:
            span = (int(m.group(1), 16), int(m.group(2), 16))
        elif line.startswith("VmFlags:") and "dc" in line.split()[1:] and span[1] - span[0] == size:
            found.append(span[0])
if len(found) != 1:
    sys.exit(f"guest RAM mapping: {len(found)} candidates")
h = hashlib.sha256()
with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
    mem.seek(found[0])
    left = size
    while left:
        chunk = mem.read(min(left, 1 << 20))
        if not chunk:
            sys.exit("short read of guest RAM")
        h.update(chunk)
        left -= len(chunk)
print(h.hexdigest())
PY
}
devices() {  # what the devices did, as seen from the host, one line
    local tap
    # Bytes and frames the host took from the TAP, i.e. that hvz sent
    # (/proc/net/dev is this namespace's; /sys/class/net is not).
    tap=$(awk -F'[: ]+' '$2 == "hvztap3" { print $3, $4 }' /proc/net/dev)
    [ -n "$tap" ] || fail "no hvztap3 in /proc/net/dev"
    echo "disk-a $(sha256sum <"$work/disk-a" | cut -c1-64)" \
        "disk-b $(sha256sum <"$work/disk-b" | cut -c1-64)" \
        "tap-rx $tap"
}

. "$(dirname "$0")/tap_server.sh"
tap_server hvztap3 172.31.3.1
head -c $((8 << 20)) /dev/zero >"$work/disk-a"
head -c $((8 << 20)) /dev/zero >"$work/disk-b"
# Each drive takes one request a second, so requests wait in its I/O
# thread when the pause comes: a thread the pause left running would go on
# completing them, and the disks and guest RAM would change.
limit='{"ops": {"size": 1, "refill_time": 1000}}'
cat >"$work/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$HVZ_GUEST_IMAGES/vmlinuz",
                 "initrd_path": "$HVZ_GUEST_IMAGES/initramfs.cpio.gz",
                 "boot_args": "console=ttyS0 reboot=k panic=1 pci=off quiet hvz.action=traffic hvz.ip=172.31.3.2 hvz.peer=172.31.3.1"},
 "machine-config": {"vcpu_count": 2, "mem_size_mib": $mem_mib},
 "drives": [{"drive_id": "a", "path_on_host": "$work/disk-a", "is_root_device": false,
             "is_read_only": false, "io_engine": "Sync", "rate_limiter": $limit},
            {"drive_id": "b", "path_on_host": "$work/disk-b", "is_root_device": false,
             "is_read_only": false, "io_engine": "Async", "rate_limiter": $limit}],
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "hvztap3"}],
 "metrics": {"metrics_path": "$work/metrics.json"}}
JSON
"$HVZ_BINARY" --api-sock "$sock" --config-file "$work/vm.json" >"$work/out" 2>&1 &
hvz_pid=$!
wait_count 2
echo "the guest's disk and network traffic runs (round $(count))"

for round in 1 2; do
    expect 204 PATCH /vm '{"state": "Paused"}'
    at=$(count)
    # The cheap checks first and last, so they span the whole interval.
    expect 204 PUT /actions '{"action_type": "FlushMetrics"}'
    first=$(devices)
    ram1=$(ram_sum) || fail "cannot checksum guest RAM: $ram1"
    sleep 1
    ram2=$(ram_sum) || fail "cannot checksum guest RAM: $ram2"
    second=$(devices)
    [ "$ram1" = "$ram2" ] || fail "guest RAM changed while Paused"
    [ "$first" = "$second" ] || fail "the devices worked while Paused:
  $first
  $second"
    expect 204 PUT /actions '{"action_type": "FlushMetrics"}'
    /usr/bin/python3 - "$work/metrics.json" <<'PY' || fail "work done while Paused"
import json, sys
line = json.loads(open(sys.argv[1]).read().splitlines()[-1])
busy = {f"{group}.{name}": value for group, fields in line.items()
        if group.startswith(("block_", "net_")) or group == "vcpu"
        for name, value in (fields.items() if isinstance(fields, dict) else [])
        if value}
if busy:
    sys.exit(f"metrics over the paused second: {busy}")
PY
    [ "$(count)" = "$at" ] || fail "the guest's console went on while Paused"
    echo "pause $round at round $at: guest RAM, disks, TAP and metrics unchanged over 1 s"
    expect 204 PATCH /vm '{"state": "Resumed"}'
    wait_count $((at + 2))
    echo "resumed: the traffic went on to round $(count)"
done
grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$work/out" && fail "sanitizer report"
term_hvz 10
[ -n "$status" ] || fail "hvz still runs 10 s after SIGTERM"
[ "$status" = 143 ] || fail "exit status $status after SIGTERM (want 143)"
grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$work/out" && fail "sanitizer report"
echo "PASS: Paused under disk and network traffic left guest RAM, disks, TAP and metrics unchanged; Resumed went on"
