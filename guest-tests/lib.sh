# shellcheck shell=bash
# guest-tests/lib.sh: what the shell guest tests that drive hvz's API share.
# Source it (after `set -u`), then call gt_init NAME:
#   $work      a fresh directory on a tmpfs (/run; else $TMPDIR or /tmp):
#              Unix sockets and FIFOs cannot live on 9p
#   $sock      $work/api.sock, where the test starts hvz's API
#   $hvz_pid   empty; the test sets it once hvz runs
#   gt_logs    the files whose tails fail() prints (default: $work/out and
#              $work/err); a test may change the array
# On exit hvz is killed and $work removed; a test that has more to clean
# defines gt_cleanup_hook, which runs first.
# Then: fail MSG, api METHOD PATH [JSON] ($code, $body, $secs), expect CODE
# METHOD PATH [JSON], alive, term_hvz SECONDS.

gt_init() {
    local base=/run
    [ -w "$base" ] || base=${TMPDIR:-/tmp}
    work=$(mktemp -d "$base/hvz-$1.XXXXXX") || { echo "FAIL: mktemp in $base"; exit 1; }
    sock=$work/api.sock
    hvz_pid=
    gt_logs=("$work/out" "$work/err")
    trap gt_cleanup EXIT
}

gt_cleanup() {
    declare -F gt_cleanup_hook >/dev/null && gt_cleanup_hook
    [ -n "$hvz_pid" ] && kill -9 "$hvz_pid" 2>/dev/null
    rm -rf "$work"
}

# fail MSG: says why the test failed, shows the logs' last lines, exits 1.
fail() {
    echo "FAIL: $*"
    local f
    for f in "${gt_logs[@]}"; do
        [ -s "$f" ] && { echo "--- $(basename "$f") (last lines)"; tail -n 30 "$f"; }
    done
    exit 1
}

# api METHOD PATH [JSON]: one request to $sock; sets $code (the HTTP
# status), $body and $secs (how long the call took). A failed connection
# fails the test.
api() {
    local out args=(-sS --max-time 30 --unix-socket "$sock" -X "$1" "http://localhost$2"
        -H 'Accept: application/json')
    [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' -d "$3")
    out=$(curl "${args[@]}" -w '\n%{http_code} %{time_total}') || fail "curl $1 $2 failed"
    body=${out%$'\n'*}
    local tail=${out##*$'\n'}
    code=${tail% *}
    # shellcheck disable=SC2034 # the tests read it
    secs=${tail#* }
}

# expect CODE METHOD PATH [JSON]: api, and fail unless the status is CODE.
expect() {
    local want=$1
    shift
    api "$@"
    [ "$code" = "$want" ] || fail "$1 $2: HTTP $code (want $want): $body"
}

# alive: fail when hvz has ended (with its exit status).
alive() {
    kill -0 "$hvz_pid" 2>/dev/null || fail "hvz died (status $(wait "$hvz_pid"; echo $?))"
}

# term_hvz SECONDS: SIGTERM to hvz, then up to SECONDS for it to end; sets
# $status (its exit status, empty when it still runs) and $took (seconds).
# shellcheck disable=SC2034 # the tests read $status and $took
term_hvz() {
    local start polls i
    start=$(date +%s.%N)
    polls=$(awk -v s="$1" 'BEGIN { print int(s * 20) }')
    kill -TERM "$hvz_pid"
    status=
    for ((i = 0; i < polls; i++)); do
        if ! kill -0 "$hvz_pid" 2>/dev/null; then
            wait "$hvz_pid"
            status=$?
            hvz_pid=
            break
        fi
        sleep 0.05
    done
    took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
}
