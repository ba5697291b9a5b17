# Shared helpers for hvz's shell scripts: paths, errors, Debian kernel
# packages (fetched and extracted, never installed) and kernel module
# dependency resolution. Sourced, not executed.

HVZ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HVZ_CACHE_DIR=${HVZ_CACHE_DIR:-$HVZ_ROOT/.cache}

die() {
    printf '%s: error: %s\n' "${HVZ_PROG:-hvz}" "$*" >&2
    exit 2
}

note() {
    printf '%s: %s\n' "${HVZ_PROG:-hvz}" "$*" >&2
}

# Serialises cache updates between concurrent scripts (held until exit).
cache_lock() {
    mkdir -p "$HVZ_CACHE_DIR"
    exec 9>"$HVZ_CACHE_DIR/.lock"
    flock 9
}

# Prints a stable hash of the given files' contents and any extra words.
inputs_hash() {
    local extra=$1
    shift
    {
        printf '%s\n' "$extra"
        cat -- "$@"
    } | sha256sum | cut -c1-16
}

# Resolves a Debian meta package (linux-image-amd64) to the versioned
# package it depends on (linux-image-6.1.0-NN-amd64).
resolve_kernel_package() {
    local meta=$1 pkg
    pkg=$(apt-cache depends "$meta" 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$pkg" ] || return 1
    printf '%s\n' "$pkg"
}

# fetch_kernel FLAVOUR: downloads and extracts Debian's linux-image-FLAVOUR
# into the cache (once per kernel version) and prints the extracted root.
# Falls back to an already extracted kernel when apt cannot answer (offline).
fetch_kernel() {
    local flavour=$1 meta="linux-image-$1" pkg dir deb tmp
    local base="$HVZ_CACHE_DIR/kernels"
    mkdir -p "$base"
    if ! pkg=$(resolve_kernel_package "$meta"); then
        dir=$(find "$base" -maxdepth 1 -name "linux-image-*-$flavour" -type d 2>/dev/null |
            sort -V | tail -n 1)
        if [ -n "$dir" ] && [ -e "$dir/.complete" ]; then
            printf '%s\n' "$dir"
            return 0
        fi
        die "cannot resolve Debian package $meta (run 'apt-get update', or scripts/install-deps)"
    fi
    dir="$base/$pkg"
    if [ ! -e "$dir/.complete" ]; then
        note "fetching $pkg from Debian's archive"
        tmp=$(mktemp -d "$base/.fetch.XXXXXX")
        (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>"$tmp/apt.err") ||
            die "apt-get download $pkg failed: $(tail -n 1 "$tmp/apt.err")"
        deb=$(ls "$tmp"/*.deb)
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$deb" "$dir" || die "cannot extract $deb"
        rm -rf "$tmp"
        touch "$dir/.complete"
    fi
    printf '%s\n' "$dir"
}

# kernel_version ROOT: the single version directory under ROOT/lib/modules.
kernel_version() {
    local d
    d=$(ls "$1/lib/modules" 2>/dev/null | head -n 1)
    [ -n "$d" ] || die "no modules in extracted kernel at $1"
    printf '%s\n' "$d"
}

# resolve_modules MODDIR NAME...: prints the .ko paths (relative to MODDIR)
# that NAMEs need, dependencies first, each once. Reads each module's
# depends= from its .modinfo section, so no kmod tools are needed.
resolve_modules() {
    local moddir=$1
    shift
    local -A path_of=() done_=()
    local f name
    while IFS= read -r f; do
        name=$(basename "$f" .ko)
        path_of[${name//-/_}]=$f
    done < <(cd "$moddir" && find . -name '*.ko' | sed 's|^\./||')
    _visit() {
        local n=${1//-/_} p deps d
        [ -n "${done_[$n]:-}" ] && return 0
        p=${path_of[$n]:-}
        [ -n "$p" ] || die "kernel module $1 not found under $moddir"
        done_[$n]=1
        deps=$(tr '\0' '\n' <"$moddir/$p" | sed -n 's/^depends=//p' | head -n 1)
        for d in ${deps//,/ }; do
            _visit "$d"
        done
        printf '%s\n' "$p"
    }
    for name in "$@"; do
        _visit "$name"
    done
}

# build_initramfs OUT INIT MODDIR MODULE...: a gzip'd newc cpio holding
# busybox (static), INIT as /init, and the modules (with their
# dependencies) under /modules, listed in load order in /modules/order.
# Static programs named in the array initramfs_extra_bins go to /bin.
build_initramfs() {
    local out=$1 init=$2 moddir=$3
    shift 3
    local bb=/bin/busybox stage m list
    [ -n "${initramfs_extra_bins+x}" ] || initramfs_extra_bins=()
    file_is_static "$bb" || die "a static $bb is needed (apt-get install busybox-static)"
    list=$(resolve_modules "$moddir" "$@") || exit 2
    stage=$(mktemp -d)
    mkdir -p "$stage"/{bin,dev,proc,sys,modules,mnt,run,tmp}
    cp "$bb" "$stage/bin/busybox"
    ln -s busybox "$stage/bin/sh"
    for m in "${initramfs_extra_bins[@]}"; do cp "$m" "$stage/bin/"; done
    cp "$init" "$stage/init"
    chmod 755 "$stage/init"
    touch "$stage/.hvz-initramfs"
    : >"$stage/modules/order"
    while IFS= read -r m; do
        cp "$moddir/$m" "$stage/modules/"
        basename "$m" >>"$stage/modules/order"
    done <<<"$list"
    (cd "$stage" && find . -print0 | sort -z |
        cpio --null -o -H newc --owner=0:0 --quiet) | gzip -1 >"$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$stage"
}

# extract_vmlinux BZIMAGE OUT: the uncompressed ELF kernel inside a bzImage
# compressed with XZ (Debian's amd64 flavour) or LZ4 (its cloud flavour),
# written to OUT. An ELF with a PVH note boots without decompressing itself,
# which takes seconds under emulation.
extract_vmlinux() {
    local off shoff shnum
    rm -f "$2.tmp"
    if off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$1" | head -n 1 | cut -d: -f1) && [ -n "$off" ]; then
        # tail may die of SIGPIPE once xz has read its one stream.
        { tail -c +$((off + 1)) "$1" || true; } | xz -dc --single-stream >"$2.tmp" 2>/dev/null ||
            return 1
    elif off=$(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$1" | head -n 1 | cut -d: -f1) &&
        [ -n "$off" ]; then
        # The legacy LZ4 frame has no end marker: lz4 complains about the
        # bytes after it, so completeness is checked below instead.
        tail -c +$((off + 1)) "$1" | lz4 -dc >"$2.tmp" 2>/dev/null || true
    else
        return 1
    fi
    [ "$(head -c 4 "$2.tmp")" = $'\x7fELF' ] || return 1
    # The section header table (e_shoff, e_shnum) must lie inside the file.
    shoff=$(od -An -t u8 -j 40 -N 8 "$2.tmp" | tr -d ' ')
    shnum=$(od -An -t u2 -j 60 -N 2 "$2.tmp" | tr -d ' ')
    [ $((shoff + shnum * 64)) -le "$(stat -c %s "$2.tmp")" ] || return 1
    mv "$2.tmp" "$2"
}

file_is_static() {
    # A static ELF has no PT_INTERP; busybox-static's binary is one.
    [ -x "$1" ] && ! grep -qa '/lib64/ld-linux' "$1"
}
