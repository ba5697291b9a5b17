#!/usr/bin/env bash
# API guest test: Firecracker's getting-started sequence with plain
# `curl --unix-socket` (PUT /boot-source, /drives/rootfs, /machine-config,
# InstanceStart; the root drive on io_uring, a virtio-rng, metrics to a
# file), then on the running guest (which prints a counter every 100 ms):
# GET / says Running; FlushMetrics shows block reads, entropy and vCPU
# exits; PATCH /drives takes a rate limiter; 100 concurrent clients hammer
# GET / with no failed request while the counter keeps going; PATCH /vm Paused stops the
# console output dead and Resumed continues the same count; pre-boot calls
# are refused; SendCtrlAltDel makes the guest reboot, which ends hvz with 0.
# Then the same through hvzctl (run, ls, pause, resume, stop).
# Needs /dev/kvm: run through scripts/kvm-run. Exit 0 = pass.
set -u
: "${HVZ_BINARY:?}" "${HVZCTL_BINARY:?}" "${HVZ_GUEST_IMAGES:?}"
. "$(dirname "$0")/lib.sh"
gt_init api
# The root image copy goes to /dev/shm for speed.
img=$(mktemp /dev/shm/hvz-api-root.XXXXXX 2>/dev/null || mktemp "$work/root.XXXXXX")
gt_cleanup_hook() {
    HVZ_RUNTIME_DIR=$work/rt "$HVZCTL_BINARY" stop --timeout 5 g1 >/dev/null 2>&1
    rm -f "$img"
}
state() {
    api GET /
    [ "$code" = 200 ] || fail "GET /: HTTP $code"
    sed -n 's/.*"state": *"\([^"]*\)".*/\1/p' <<<"$body"
}
counter_size() { stat -c %s "$work/out"; }
last_count() { grep -ao 'hvz-guest: counter [0-9]*' "$work/out" | tail -n 1 | awk '{print $3}'; }
wait_count_above() {  # wait_count_above N SECONDS
    local n=$1 deadline=$((SECONDS + $2)) c
    while [ $SECONDS -lt $deadline ]; do
        c=$(last_count)
        [ -n "$c" ] && [ "$c" -gt "$n" ] && return 0
        alive
        sleep 0.5
    done
    fail "the counter did not pass $n within $2 s (last: $(last_count))"
}

cp "$HVZ_GUEST_IMAGES/rootfs.ext4" "$img" || fail "cannot copy the root image"
"$HVZ_BINARY" --api-sock "$sock" --id api_test >"$work/out" 2>&1 </dev/null &
hvz_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "hvz did not create its API socket"
[ "$(state)" = "Not started" ] || fail "state before InstanceStart: $(state)"

# Firecracker's getting-started sequence.
expect 204 PUT /boot-source "{\"kernel_image_path\": \"$HVZ_GUEST_IMAGES/vmlinuz\",
  \"initrd_path\": \"$HVZ_GUEST_IMAGES/initramfs.cpio.gz\",
  \"boot_args\": \"console=ttyS0 reboot=k panic=1 pci=off quiet hvz.action=counter\"}"
expect 204 PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$img\",
  \"is_root_device\": true, \"is_read_only\": false, \"io_engine\": \"Async\"}"
expect 204 PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 256}'
expect 204 PUT /entropy '{}'
expect 204 PUT /metrics "{\"metrics_path\": \"$work/metrics.json\"}"
expect 400 PATCH /vm '{"state": "Paused"}'  # not started yet
start=$SECONDS
expect 204 PUT /actions '{"action_type": "InstanceStart"}'
[ "$(state)" = Running ] || fail "state after InstanceStart: $(state)"
echo "InstanceStart accepted; GET / says Running"
wait_count_above 5 300
echo "guest counter running after $((SECONDS - start)) s"
grep -q "hvz-guest: rootfs /dev/vda" "$work/out" || fail "the guest's root is not /dev/vda"
grep -q "hvz-guest: hwrng virtio_rng" "$work/out" || fail "the guest has no virtio-rng"

# Metrics: the root was read through io_uring, the guest took entropy, the
# vCPU exited; a live rate-limit update is taken.
expect 204 PUT /actions '{"action_type": "FlushMetrics"}'
/usr/bin/python3 - "$work/metrics.json" <<'PY' || fail "metrics: $(tail -c 600 "$work/metrics.json")"
import json, sys
line = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert line["block_rootfs"]["read_bytes"] > 0, "no block reads"
assert line["entropy"]["entropy_bytes"] > 0, "no entropy"
assert line["vcpu"]["exit_io_out"] > 0, "no vcpu exits"
PY
expect 204 PATCH /drives/rootfs '{"drive_id": "rootfs",
  "rate_limiter": {"bandwidth": {"size": 104857600, "refill_time": 100}}}'
echo "io_uring root drive, virtio-rng and metrics (FlushMetrics) work; PATCH /drives takes a limiter"

# Post-boot rules.
expect 400 PUT /actions '{"action_type": "InstanceStart"}'
expect 400 PUT /boot-source "{\"kernel_image_path\": \"$HVZ_GUEST_IMAGES/vmlinuz\"}"
grep -q fault_message <<<"$body" || fail "no fault_message: $body"
expect 400 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256}'
expect 200 GET /vm/config
grep -q '"drive_id": *"rootfs"' <<<"$body" || fail "GET /vm/config lacks the drive: $body"

# 100 concurrent clients (one curl with 100 parallel connections: spawning
# a process per request would measure fork, not the API), 2000 requests.
before=$(last_count)
urls=()
for i in $(seq 2000); do urls+=(-o /dev/null "http://localhost/?client=$i"); done
curl -s --no-progress-meter --max-time 300 --parallel --parallel-immediate --parallel-max 100 \
    --unix-socket "$sock" -w '%{http_code}\n' "${urls[@]}" >"$work/codes"
ok=$(grep -c '^200$' "$work/codes")
[ "$ok" -eq 2000 ] || fail "$ok of 2000 concurrent GET / answered 200"
kill -0 "$hvz_pid" || fail "hvz died under concurrent clients"
wait_count_above "$before" 60
echo "100 concurrent clients: 2000/2000 GET / answered 200; the guest kept counting"

# Pause: the console stops dead; resume: the same count continues.
expect 204 PATCH /vm '{"state": "Paused"}'
[ "$(state)" = Paused ] || fail "state after Paused: $(state)"
size=$(counter_size)
paused_at=$(last_count)
sleep 3
[ "$(counter_size)" = "$size" ] || fail "console output grew while Paused"
expect 204 PATCH /vm '{"state": "Resumed"}'
[ "$(state)" = Running ] || fail "state after Resumed: $(state)"
wait_count_above $((paused_at + 5)) 60
seq_ok=$(grep -ao 'hvz-guest: counter [0-9]*' "$work/out" | awk '{print $3}' |
    awk 'NR > 1 && $1 != prev + 1 { bad = 1 } { prev = $1 } END { print bad ? "no" : "yes" }')
[ "$seq_ok" = yes ] || fail "the counter skipped or restarted around the pause"
echo "Paused: no output for 3 s at count $paused_at; Resumed: the count continued"

# Ctrl-Alt-Del: the guest's init reboots; hvz ends with 0.
expect 204 PUT /actions '{"action_type": "SendCtrlAltDel"}'
for _ in $(seq 1200); do kill -0 "$hvz_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$hvz_pid" 2>/dev/null && fail "hvz still runs 120 s after SendCtrlAltDel"
wait "$hvz_pid"
rc=$?
hvz_pid=
grep -q "hvz-guest: ctrl-alt-del" "$work/out" || fail "the guest did not see Ctrl-Alt-Del"
[ "$rc" -eq 0 ] || fail "hvz exited $rc after the guest rebooted"
[ -e "$sock" ] && fail "the API socket was left behind"
echo "SendCtrlAltDel: the guest rebooted, hvz exited 0 and removed its socket"

# The same VM through hvzctl.
export HVZ_RUNTIME_DIR=$work/rt
"$HVZCTL_BINARY" run --name g1 --kernel "$HVZ_GUEST_IMAGES/vmlinuz" \
    --initrd "$HVZ_GUEST_IMAGES/initramfs.cpio.gz" --memory 256 \
    --cmdline "console=ttyS0 reboot=k panic=1 pci=off quiet hvz.action=counter" \
    >"$work/run.out" 2>&1 || { cat "$work/run.out"; fail "hvzctl run failed"; }
"$HVZCTL_BINARY" ls >"$work/ls.out" 2>&1 || fail "hvzctl ls failed"
grep -q "g1.*Running" "$work/ls.out" || { cat "$work/ls.out"; fail "hvzctl ls does not show g1 Running"; }
"$HVZCTL_BINARY" pause g1 || fail "hvzctl pause failed"
"$HVZCTL_BINARY" status --json g1 | grep -q '"Paused"' || fail "hvzctl status is not Paused"
"$HVZCTL_BINARY" resume g1 || fail "hvzctl resume failed"
"$HVZCTL_BINARY" status --json g1 | grep -q '"Running"' || fail "hvzctl status is not Running"
"$HVZCTL_BINARY" stop --timeout 120 g1 || fail "hvzctl stop failed"
"$HVZCTL_BINARY" ls --json | grep -q '"g1"' && fail "g1 still listed after stop"
echo "hvzctl: run, ls, pause, status, resume, stop"
echo "PASS: API getting-started sequence, pause/resume, 100 concurrent clients, Ctrl-Alt-Del, hvzctl"
