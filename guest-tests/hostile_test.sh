#!/usr/bin/env bash
# Hostile-guest test: the guest runs /bin/hostile (scripts/guest/hostile.c),
# a malicious driver that takes every virtio-mmio device away from the
# kernel and attacks it: out-of-range queue select and size, odd-sized and
# unknown register accesses, status written out of order, config accesses at
# odd offsets and sizes, notifications for queues that do not exist, rings
# outside RAM, malformed chains cycled through reset, resets with requests in
# flight, and a ring re-filled as fast as it drains. The VM has two drives
# (Sync and Async engines), a network interface on a TAP, a virtio-console
# and a virtio-rng. Meanwhile and afterwards hvz must stay up, answer the
# API, pause and resume within a second each time, log a bounded number of
# lines, end each device's refill with a reset under a second, and exit
# within 2 s of SIGTERM. (A sanitizer build of hvz, unoptimised and several
# times slower, gets twice the time for each.) Needs
# /dev/kvm and root: run through scripts/kvm-run. Exit 0 = pass.
set -u
: "${HVZ_BINARY:?}" "${HVZ_GUEST_IMAGES:?}"
if [ "${HVZ_HOSTILE_TEST_IN_NS:-}" != 1 ]; then
    HVZ_HOSTILE_TEST_IN_NS=1 exec unshare --net -- "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
gt_init hostile
limit=1.0
limit_ms=1000
term_limit=2.0
if grep -q __asan_init "$HVZ_BINARY"; then
    limit=2.0
    limit_ms=2000
    term_limit=4.0
fi

ip link set lo up
ip tuntap add dev hvztap2 mode tap || fail "cannot create a TAP device"
ip link set hvztap2 up
head -c $((8 << 20)) /dev/zero >"$work/disk-a"
head -c $((8 << 20)) /dev/zero >"$work/disk-b"
cat >"$work/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$HVZ_GUEST_IMAGES/vmlinuz",
                 "initrd_path": "$HVZ_GUEST_IMAGES/initramfs.cpio.gz",
                 "boot_args": "console=ttyS0 reboot=k panic=1 pci=off quiet hvz.action=hostile hvz.seconds=8"},
 "machine-config": {"vcpu_count": 2, "mem_size_mib": 256},
 "drives": [{"drive_id": "a", "path_on_host": "$work/disk-a", "is_root_device": false,
             "is_read_only": false},
            {"drive_id": "b", "path_on_host": "$work/disk-b", "is_root_device": false,
             "is_read_only": false, "io_engine": "Async"}],
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "hvztap2"}],
 "console": {"mode": "file", "path": "$work/hvc0.log"},
 "entropy": {}}
JSON
"$HVZ_BINARY" --api-sock "$sock" --config-file "$work/vm.json" >"$work/out" 2>"$work/err" &
hvz_pid=$!

started=
for _ in $(seq 600); do
    grep -q "hvz-guest: hostile started" "$work/out" 2>/dev/null && { started=1; break; }
    alive
    sleep 0.5
done
[ -n "$started" ] || fail "the guest did not start its attack within 300 s"

# While the attack runs: the API answers, and pause and resume are prompt.
pauses=0
slowest=0
done_=
for _ in $(seq 400); do
    alive
    if grep -q "hvz-guest: hostile done" "$work/out"; then done_=1; break; fi
    api GET /
    [ "$code" = 200 ] || fail "GET / during the attack: HTTP $code: $body"
    api PATCH /vm '{"state": "Paused"}'
    [ "$code" = 204 ] || fail "PATCH /vm Paused: HTTP $code: $body"
    p=$secs
    api GET /
    grep -q '"Paused"' <<<"$body" || fail "GET / after the pause: $body"
    api PATCH /vm '{"state": "Resumed"}'
    [ "$code" = 204 ] || fail "PATCH /vm Resumed: HTTP $code: $body"
    for t in "$p" "$secs"; do
        awk -v t="$t" -v l="$limit" 'BEGIN { exit !(t < l) }' ||
            fail "a pause or resume took $t s (limit $limit s)"
        slowest=$(awk -v a="$slowest" -v b="$t" 'BEGIN { print (b > a) ? b : a }')
    done
    pauses=$((pauses + 1))
    sleep 1
done
[ -n "$done_" ] || fail "the attack did not finish"
echo "pause/resume during the attack: $pauses rounds, slowest call ${slowest} s"
grep -a "hvz-guest: hostile" "$work/out" | tr -d '\r' | sed 's/^/  /'

attacked=$(grep -ao 'hostile done, [0-9]* devices' "$work/out" | awk '{print $3}')
[ "${attacked:-0}" -ge 5 ] || fail "only ${attacked:-0} devices were attacked (want 5)"
# (No process substitution: the emulated KVM host has no /dev/fd, and a
# loop reading from it would check nothing.)
resets=$(grep -ao 'reset under refill took [0-9]* ms' "$work/out" | awk '{print $5}')
[ "$(wc -w <<<"$resets")" -ge 5 ] || fail "missing refill results: $resets"
for ms in $resets; do
    [ "$ms" -lt "$limit_ms" ] || fail "a reset under refill took $ms ms (limit $limit_ms ms)"
done

api GET /
[ "$code" = 200 ] || fail "GET / after the attack: HTTP $code"
lines=$(wc -l <"$work/err")
echo "hvz log lines during the attack: $lines"
[ "$lines" -le 300 ] || fail "hvz logged $lines lines (the limit is 300)"
grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$work/err" && fail "sanitizer report"

term_hvz 5
[ -n "$status" ] || fail "hvz still runs 5 s after SIGTERM"
echo "SIGTERM: exit $status in $took s"
awk -v t="$took" -v l="$term_limit" 'BEGIN { exit !(t < l) }' ||
    fail "exit after SIGTERM took $took s (limit $term_limit s)"
[ "$status" = 143 ] || fail "exit status $status after SIGTERM (want 143)"
grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$work/err" && fail "sanitizer report"
echo "PASS: a hostile guest attacked $attacked devices; hvz stayed up and responsive"
