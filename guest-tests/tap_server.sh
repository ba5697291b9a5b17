# Sourced by the network guest tests (inside their own network namespace):
# tap_server TAP ADDRESS creates TAP with ADDRESS/24 as the host end and
# serves 16 MiB of random bytes at http://ADDRESS:8000/blob (a background
# job of the caller), returning once the server listens; $want is their
# sha256. Needs $work (a scratch directory) and fail().
tap_server() {
    local tap=$1 address=$2
    ip link set lo up
    ip tuntap add dev "$tap" mode tap || fail "cannot create a TAP device"
    ip addr add "$address/24" dev "$tap"
    ip link set "$tap" up
    mkdir "$work/www"
    head -c $((16 << 20)) /dev/urandom >"$work/www/blob"
    want=$(sha256sum "$work/www/blob" | cut -d' ' -f1)
    python3 -m http.server 8000 --bind "$address" --directory "$work/www" >"$work/http.log" 2>&1 &
    # Boot only once the server listens (python starts slowly on a busy host).
    for _ in $(seq 150); do
        (exec 3<>"/dev/tcp/$address/8000") 2>/dev/null && break
        sleep 0.2
    done
}
