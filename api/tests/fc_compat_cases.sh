#!/bin/bash
# Sends the API requests where hvz's answers were compared with
# Firecracker's (duplicate keys, null, boot_args, metrics/logger twice,
# GET /vm/config, TAPs at PUT, machine-config checks, deprecation, fault
# wording, snapshot create/load rules and bodies) to `hvz --api-sock` with curl, before any InstanceStart, and
# prints one tab-separated line per request: case, status, Deprecation
# header, fault_message (or the body of a 200). Run it on two builds and
# compare the outputs. Also floods one connection with an endless chunk
# extension (Python: curl cannot send one) and says how much the server
# took.
#
# Usage: fc_compat_cases.sh HVZ_BINARY
# Needs curl and python3; the TAP cases need root (CAP_NET_ADMIN) and
# setpriv, and print "skipped" without.
set -u
hvz=$(readlink -f "$1")
work=$(mktemp -d /tmp/hvz-fc-compat-XXXXXX)
pids=()
taps=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    for t in "${taps[@]}"; do ip link del "$t" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

cd "$work" || exit 1
: >vmlinux
truncate -s 1M rootfs.ext4 data.img

# start NAME [PREFIX...]: hvz --api-sock $work/NAME.sock, run by PREFIX.
start() {
    local name=$1
    shift
    "$@" "$hvz" --api-sock "$work/$name.sock" --id "$name" >"$work/$name.out" 2>&1 </dev/null &
    pids+=($!)
    for _ in $(seq 200); do [ -S "$work/$name.sock" ] && return 0; sleep 0.05; done
    echo "hvz did not start: $(cat "$work/$name.out")" >&2
    exit 1
}

sock="$work/main.sock"
# req CASE METHOD PATH [BODY]: one request, one output line.
req() {
    local what=$1 method=$2 path=$3 code
    local args=(-sS --max-time 10 --unix-socket "$sock" -X "$method" -D "$work/h" -o "$work/b"
                -w '%{http_code}')
    [ $# -ge 4 ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
    code=$(curl "${args[@]}" "http://localhost$path") || code="curl failed"
    local dep
    dep=$(tr -d '\r' <"$work/h" | awk -F': ' 'tolower($1) == "deprecation" {print $2}')
    local text
    text=$(python3 -c '
import json, sys
raw = open(sys.argv[1]).read()
try:
    j = json.loads(raw)
except ValueError:
    print(raw.strip()); sys.exit()
print(j["fault_message"] if isinstance(j, dict) and "fault_message" in j else json.dumps(j))
' "$work/b" 2>/dev/null)
    printf '%s\t%s\t%s\t%s\n' "$what" "$code" "${dep:--}" "$text"
}

start main

# --- duplicate keys and null ------------------------------------------------
req dup-key-machine PUT /machine-config '{"vcpu_count": 1, "vcpu_count": 2, "mem_size_mib": 128}'
req dup-key-boot PUT /boot-source '{"kernel_image_path": "vmlinux", "kernel_image_path": "x"}'
req null-kernel PUT /boot-source '{"kernel_image_path": null}'
req null-smt PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "smt": null}'
req null-huge-pages PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "huge_pages": null}'
req null-is-root PUT /drives/rootfs \
    '{"drive_id": "rootfs", "path_on_host": "rootfs.ext4", "is_root_device": null}'
req null-cache-type PUT /drives/rootfs \
    '{"drive_id": "rootfs", "path_on_host": "rootfs.ext4", "is_root_device": true, "cache_type": null}'
req null-metrics-path PUT /metrics '{"metrics_path": null}'
req null-action PUT /actions '{"action_type": null}'
req null-optional-ok PUT /boot-source \
    '{"kernel_image_path": "vmlinux", "initrd_path": null, "boot_args": null}'
req null-patch-ok PATCH /machine-config '{"vcpu_count": 2, "smt": null}'

# --- boot_args longer than the command line ---------------------------------
a2047=$(printf 'a%.0s' $(seq 2047))
req boot-args-2047 PUT /boot-source "{\"kernel_image_path\": \"vmlinux\", \"boot_args\": \"$a2047\"}"
req boot-args-2048 PUT /boot-source "{\"kernel_image_path\": \"vmlinux\", \"boot_args\": \"${a2047}a\"}"
req boot-args-newline PUT /boot-source '{"kernel_image_path": "vmlinux", "boot_args": "a\nb"}'

# --- metrics and logger twice -----------------------------------------------
req metrics-1st PUT /metrics '{"metrics_path": "metrics.json"}'
req metrics-2nd PUT /metrics '{"metrics_path": "metrics2.json"}'
req logger-1st PUT /logger '{"log_path": "hvz.log", "level": "Info"}'
req logger-2nd PUT /logger '{"log_path": "hvz.log", "level": "Debug"}'
req logger-bad-path PUT /logger '{"log_path": "no-such-dir/hvz.log"}'

# --- machine-config: what is checked at PUT/PATCH ----------------------------
req missing-vcpu PUT /machine-config '{"mem_size_mib": 128}'
req missing-mem PUT /machine-config '{"vcpu_count": 2}'
req mem-8 PATCH /machine-config '{"mem_size_mib": 8}'
req mem-u32-max PATCH /machine-config '{"mem_size_mib": 4294967295}'
req mem-2^64 PATCH /machine-config '{"mem_size_mib": 18446744073709551616}'
req mem-0 PATCH /machine-config '{"mem_size_mib": 0}'
req vcpu-0 PATCH /machine-config '{"vcpu_count": 0}'
req mem-back PATCH /machine-config '{"mem_size_mib": 256}'
req cpu-template-put PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256, "cpu_template": "None"}'
req cpu-template-patch PATCH /machine-config '{"cpu_template": "None"}'
req cpu-template-unknown PATCH /machine-config '{"cpu_template": "random_string"}'

# --- wording of other faults ------------------------------------------------
req kernel-missing PUT /boot-source '{"kernel_image_path": "foo.bar"}'
req boot-ok PUT /boot-source '{"kernel_image_path": "vmlinux"}'
req drive-missing PUT /drives/rootfs \
    '{"drive_id": "rootfs", "path_on_host": "foo.bar", "is_root_device": true, "is_read_only": true}'
req drive-root PUT /drives/rootfs \
    '{"drive_id": "rootfs", "path_on_host": "rootfs.ext4", "is_root_device": true, "is_read_only": false}'
req drive-second-root PUT /drives/scratch \
    '{"drive_id": "scratch", "path_on_host": "data.img", "is_root_device": true, "is_read_only": false}'
req drive-writeback PUT /drives/scratch \
    '{"drive_id": "scratch", "path_on_host": "data.img", "is_root_device": false, "cache_type": "Writeback", "rate_limiter": {}}'
req patch-drive-unknown-field PATCH /drives/scratch \
    '{"drive_id": "scratch", "path_on_host": "data.img", "is_read_only": true}'
req patch-drive-preboot PATCH /drives/scratch '{"drive_id": "scratch", "path_on_host": "data.img"}'
req patch-boot-source PATCH /boot-source '{"kernel_image_path": "vmlinux"}'
req unknown-field PUT /boot-source '{"kernel_image_path": "vmlinux", "kernel": "x"}'
req wrong-type PUT /machine-config '{"vcpu_count": "2", "mem_size_mib": 128}'
req action-unknown PUT /actions '{"action_type": "Reboot"}'

# --- snapshots ------------------------------------------------------------------
# On the configured instance: create before boot, load after boot-specific
# resources (with the deprecated fields: the Deprecation header), dirty
# page tracking in machine-config.
req track-dirty-pages PATCH /machine-config '{"track_dirty_pages": true}'
req snapshot-create-preboot PUT /snapshot/create \
    '{"snapshot_type": "Diff", "snapshot_path": "vm.snap", "mem_file_path": "vm.mem"}'
req snapshot-create-bad-type PUT /snapshot/create \
    '{"snapshot_type": "Partial", "snapshot_path": "vm.snap", "mem_file_path": "vm.mem"}'
req snapshot-load-after-config PUT /snapshot/load \
    '{"snapshot_path": "vm.snap", "mem_backend": {"backend_type": "File", "backend_path": "vm.mem"}}'
req snapshot-load-deprecated PUT /snapshot/load \
    '{"snapshot_path": "vm.snap", "mem_file_path": "vm.mem", "enable_diff_snapshots": true, "track_dirty_pages": true}'
req snapshot-missing-op PUT /snapshot '{"snapshot_path": "vm.snap", "mem_file_path": "vm.mem"}'
# On a fresh instance: body errors (which Firecracker survives), then a
# load of files that do not exist (after which Firecracker exits), then
# what is left of the process.
start snap
sock="$work/snap.sock"
req snapshot-load-no-mem PUT /snapshot/load '{"snapshot_path": "vm.snap"}'
req snapshot-load-both-mem PUT /snapshot/load \
    '{"snapshot_path": "vm.snap", "mem_file_path": "vm.mem", "mem_backend": {"backend_type": "File", "backend_path": "vm.mem"}}'
req snapshot-load-no-backend-type PUT /snapshot/load \
    '{"snapshot_path": "vm.snap", "mem_backend": {"backend_path": "vm.mem"}}'
req snapshot-load-unknown-field PUT /snapshot/load '{"snapshot_path": "vm.snap", "mem_file_path": "vm.mem", "resume": true}'
req snapshot-load-override-unknown-field PUT /snapshot/load \
    '{"snapshot_path": "vm.snap", "mem_file_path": "vm.mem", "network_overrides": [{"iface_id": "eth0", "host_dev_name": "tap0", "x": 1}]}'
req snapshot-load-logger PUT /logger '{"log_path": "snap.log", "level": "Info"}'
req snapshot-load-missing-files PUT /snapshot/load \
    '{"snapshot_path": "missing.snap", "mem_backend": {"backend_type": "File", "backend_path": "missing.mem"}, "resume_vm": true}'
req snapshot-after-failed-load GET /
req snapshot-boot-after-failed-load PUT /boot-source '{"kernel_image_path": "vmlinux"}'
sock="$work/main.sock"

# --- network interfaces: the TAP at PUT ---------------------------------------
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v setpriv >/dev/null; then
    req net-eth0 PUT /network-interfaces/eth0 \
        '{"iface_id": "eth0", "host_dev_name": "hvzfc0", "guest_mac": "06:00:00:00:00:01"}'
    req net-same-mac PUT /network-interfaces/eth1 \
        '{"iface_id": "eth1", "host_dev_name": "hvzfc1", "guest_mac": "06:00:00:00:00:01"}'
    req net-same-tap PUT /network-interfaces/eth1 '{"iface_id": "eth1", "host_dev_name": "hvzfc0"}'
    ip tuntap add dev hvzfcmq0 mode tap multi_queue && taps+=(hvzfcmq0)
    req net-multi-queue PUT /network-interfaces/eth1 '{"iface_id": "eth1", "host_dev_name": "hvzfcmq0"}'
    python3 -c '
import fcntl, os, struct, sys, time
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"hvzfcbusy0", 0x0002 | 0x1000))
print("held", flush=True)
time.sleep(600)
' >"$work/busy.out" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do grep -q held "$work/busy.out" && break; sleep 0.05; done
    req net-busy PUT /network-interfaces/eth1 '{"iface_id": "eth1", "host_dev_name": "hvzfcbusy0"}'
    # A TAP that does not exist, for an hvz that may not create one.
    start nocap setpriv --bounding-set -net_admin --inh-caps -net_admin
    sock="$work/nocap.sock"
    req net-missing-no-cap PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "hvzfcnone0"}'
    sock="$work/main.sock"
else
    for c in net-eth0 net-same-mac net-same-tap net-multi-queue net-busy net-missing-no-cap; do
        printf '%s\tskipped\t-\tneeds root, ip and setpriv\n' "$c"
    done
fi

# --- GET /vm/config -------------------------------------------------------------
req vm-config GET /vm/config

# --- one client, an endless chunk extension -------------------------------------
python3 - "$sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(b"PUT /boot-source HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;x=")
piece, sent, total, note = b"a" * 65536, 0, 64 << 20, ""
try:
    while sent < total:
        sent += s.send(piece)
except OSError as e:
    note = " (then %s)" % (e.strerror or e)
s.settimeout(3)
try:
    answer = s.recv(4096).decode(errors="replace").split("\r\n")
    answer = "%s %s" % (answer[0], answer[-1])
except OSError as e:
    answer = "no answer (%s)" % (e.strerror or e)
print("chunk-extension-flood\t-\t-\tserver took %d of %d bytes%s; %s" % (sent, total, note, answer))
PY
