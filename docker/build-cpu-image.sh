#!/usr/bin/env bash
# Build a CPU-only Triton Inference Server image without any image registry.
#
#   docker/build-cpu-image.sh [TAG] [--force]      (default TAG: triton-perf-cpu:2.51.0)
#
# 1. A Debian bookworm rootfs by debootstrap (minbase + python3, python3-numpy, libpython3.11),
#    from the Debian mirror that apt on this machine uses (read from /etc/apt/sources.list and
#    /etc/apt/sources.list.d/ at run time). The finished rootfs is cached as a tarball under
#    the cache dir, so later builds skip debootstrap.
# 2. The Triton server shipped in the nvidia-pytriton wheel (bin, backends, caches, the
#    Python 3.11 backend stub) copied to /opt/tritonserver, its shared libraries to
#    /opt/tritonserver/lib (listed in /etc/ld.so.conf.d/, ldconfig run in the chroot),
#    tritonserver linked to /usr/local/bin.
# 3. `docker import` of the tree as TAG. Skipped if TAG exists already (unless --force).
#
# Needs root, debootstrap and a docker client (apt-get install debootstrap docker.io) and a
# reachable engine (DOCKER_HOST; if unset and /tmp/triton-perf-docker/docker.sock exists, that
# one, see docker/start-dockerd.sh).
#
# Environment:
#   PYTHON               interpreter with nvidia-pytriton installed (default: python3)
#   TRITON_PERF_CACHE    cache dir (default: ${XDG_CACHE_HOME:-~/.cache}/triton-perf)
#   DEBIAN_MIRROR        override the mirror read from apt's sources (for debootstrap only)
set -euo pipefail

TAG=triton-perf-cpu:2.51.0
FORCE=0
for a in "$@"; do
    case "$a" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        -*) echo "unknown option $a" >&2; exit 2 ;;
        *) TAG="$a" ;;
    esac
done

PYTHON="${PYTHON:-python3}"
CACHE="${TRITON_PERF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/triton-perf}"
SUITE=bookworm
VARIANT=minbase
INCLUDE=python3,python3-numpy,libpython3.11
STUB_PY=3.11   # bookworm's python3

T0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
log() { echo "[build-cpu-image $(since "$T0")s] $*" >&2; }

if [ -z "${DOCKER_HOST:-}" ] && [ -S /tmp/triton-perf-docker/docker.sock ]; then
    export DOCKER_HOST=unix:///tmp/triton-perf-docker/docker.sock
fi
if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
"$DOCKER" info >/dev/null 2>&1 || {
    echo "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset});" \
         "start one with docker/start-dockerd.sh and export its DOCKER_HOST" >&2
    exit 1
}
log "engine: ${DOCKER_HOST:-default socket}"

if [ "$FORCE" = 0 ] && "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    log "image $TAG exists already: nothing to do (--force to rebuild)"
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "needs root (debootstrap, chroot)" >&2; exit 1; }

# --- the pytriton server tree ----------------------------------------------------------------
PT="$("$PYTHON" -c 'import pytriton, os; print(os.path.dirname(pytriton.__file__))')" || {
    echo "$PYTHON cannot import pytriton: install nvidia-pytriton or set PYTHON" >&2
    exit 1
}
TS="$PT/tritonserver"
LIBS="$(dirname "$PT")/nvidia_pytriton.libs"
STUB="$TS/python_backend_stubs/$STUB_PY/triton_python_backend_stub"
for p in "$TS/bin/tritonserver" "$TS/backends/python" "$TS/caches" "$STUB" "$LIBS"; do
    [ -e "$p" ] || { echo "missing in the pytriton install: $p" >&2; exit 1; }
done
PT_VERSION="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("nvidia-pytriton"))' 2>/dev/null || echo unknown)"
log "pytriton $PT_VERSION at $PT"

# --- the Debian mirror, from apt's own configuration -----------------------------------------
find_mirror() { "$PYTHON" "$(dirname "$0")/debian-mirror" "$SUITE"; }
MIRROR="${DEBIAN_MIRROR:-}"
if [ -z "$MIRROR" ]; then
    MIRROR="$(find_mirror)" || {
        echo "no 'deb' source for '$SUITE' with component 'main' in /etc/apt/sources.list{,.d/}:" \
             "set DEBIAN_MIRROR" >&2
        exit 1
    }
fi
log "debian mirror: $MIRROR ($SUITE)"

# --- rootfs, cached ---------------------------------------------------------------------------
mkdir -p "$CACHE"
ARCH="$(dpkg --print-architecture)"
ROOTFS_TAR="$CACHE/rootfs-$SUITE-$VARIANT-$ARCH-$(echo "$INCLUDE" | md5sum | cut -c1-8).tar"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/triton-perf-image.XXXXXX")"
ROOTFS="$WORK/rootfs"
cleanup() {
    # debootstrap mounts /proc and /sys in the target; never rm -rf through a live mount.
    awk -v r="$ROOTFS/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

if [ -f "$ROOTFS_TAR" ]; then
    log "rootfs from cache $ROOTFS_TAR"
    mkdir -p "$ROOTFS"
    tar -C "$ROOTFS" --numeric-owner -xpf "$ROOTFS_TAR"
else
    command -v debootstrap >/dev/null || {
        echo "debootstrap not found: apt-get install debootstrap" >&2; exit 1; }
    log "debootstrap --variant=$VARIANT --include=$INCLUDE $SUITE (cold, takes a minute or two)"
    if ! debootstrap --variant="$VARIANT" --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" \
            >"$WORK/debootstrap.log" 2>&1; then
        echo "debootstrap failed; last lines of its log:" >&2
        tail -n 30 "$WORK/debootstrap.log" >&2
        [ -f "$ROOTFS/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
        exit 1
    fi
    log "debootstrap done"
    # Slim down: package caches and lists are of no use in the image.
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
           "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/* "$ROOTFS"/debootstrap
    tar -C "$ROOTFS" --numeric-owner -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    log "rootfs cached as $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
fi

# --- Triton into the rootfs -----------------------------------------------------------------
OPT="$ROOTFS/opt/tritonserver"
mkdir -p "$OPT/lib"
cp -a "$TS/bin" "$TS/backends" "$TS/caches" "$OPT/"
cp -a "$STUB" "$OPT/backends/python/triton_python_backend_stub"
cp -a "$LIBS/." "$OPT/lib/"
find "$OPT" -name __pycache__ -prune -exec rm -rf {} +
echo /opt/tritonserver/lib >"$ROOTFS/etc/ld.so.conf.d/tritonserver.conf"
chroot "$ROOTFS" /sbin/ldconfig
ln -sf /opt/tritonserver/bin/tritonserver "$ROOTFS/usr/local/bin/tritonserver"
cat >"$OPT/BUILD_INFO" <<EOF
built by docker/build-cpu-image.sh (pytest-triton-perf)
triton server from nvidia-pytriton $PT_VERSION
rootfs: debian $SUITE $VARIANT + $INCLUDE
EOF
# Check that everything the server and the stub need resolves inside the rootfs.
missing="$(chroot "$ROOTFS" /bin/sh -c \
    'ldd /opt/tritonserver/bin/tritonserver /opt/tritonserver/backends/python/*.so /opt/tritonserver/backends/python/triton_python_backend_stub' \
    | grep 'not found' || true)"
if [ -n "$missing" ]; then
    echo "unresolved libraries in the image:" >&2; echo "$missing" >&2; exit 1
fi
chroot "$ROOTFS" python3 -c 'import numpy' || { echo "numpy not importable in the image" >&2; exit 1; }
log "triton tree in place ($(du -sh "$OPT" | cut -f1))"

# Docker mounts its own /dev; debootstrap's device nodes are not wanted in the image.
rm -rf "${ROOTFS:?}/dev" && mkdir -m 755 "$ROOTFS/dev"

# --- import -----------------------------------------------------------------------------------
OLD_ID="$("$DOCKER" image inspect "$TAG" --format '{{.Id}}' 2>/dev/null || true)"
IMAGE_ID="$(tar -C "$ROOTFS" --numeric-owner -c . | "$DOCKER" import \
    -c 'ENV PATH=/opt/tritonserver/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'ENV TRITON_SERVER_VERSION=2.51.0' \
    -c 'WORKDIR /opt/tritonserver' \
    -c 'ENTRYPOINT []' \
    -c 'CMD ["/bin/bash"]' \
    -c "LABEL org.opencontainers.image.title=triton-perf-cpu org.opencontainers.image.description=\"CPU-only Triton 2.51.0 from nvidia-pytriton $PT_VERSION on Debian $SUITE\"" \
    -m "docker/build-cpu-image.sh: Triton 2.51.0 (nvidia-pytriton $PT_VERSION) on Debian $SUITE" \
    - "$TAG")"
SIZE="$("$DOCKER" image inspect "$TAG" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
log "imported $TAG ($IMAGE_ID, $SIZE)"
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$IMAGE_ID" ]; then
    # The previous build lost its tag (--force): drop it unless a container still uses it.
    if "$DOCKER" image rm "$OLD_ID" >/dev/null 2>&1; then log "removed previous image $OLD_ID"; fi
fi
echo "$TAG"
