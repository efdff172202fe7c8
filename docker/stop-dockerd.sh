#!/usr/bin/env bash
# Stop the private Docker engine started by docker/start-dockerd.sh.
#
#   docker/stop-dockerd.sh [DIR] [--purge]   (default DIR: /tmp/triton-perf-docker)
#
# Sends SIGTERM to the dockerd recorded in DIR/docker.pid (dockerd then stops its containers
# and its own containerd) and waits for it to exit; SIGKILL after DOCKERD_STOP_TIMEOUT seconds
# (default 60). Running containers are stopped by dockerd on shutdown. --purge also removes DIR
# (images included). Exits 0 if nothing was running.
set -euo pipefail

DIR=/tmp/triton-perf-docker
PURGE=0
for a in "$@"; do
    case "$a" in
        --purge) PURGE=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) DIR="$a" ;;
    esac
done
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
PIDFILE="$DIR/docker.pid"
TIMEOUT="${DOCKERD_STOP_TIMEOUT:-60}"

pid=""
[ -f "$PIDFILE" ] && pid="$(cat "$PIDFILE" 2>/dev/null || true)"

# Only signal the process if it really is a dockerd using this DIR (pid files can be stale
# and pids reused).
alive() {
    local st
    st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
is_ours() {
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    case "$cmd" in *dockerd*"$DIR/docker.sock"*) return 0 ;; *) return 1 ;; esac
}

if is_ours; then
    echo "stopping dockerd pid $pid ($DIR)" >&2
    kill -TERM "$pid"
    waited=0
    while alive "$pid"; do
        if [ "$waited" -ge $(( TIMEOUT * 10 )) ]; then
            echo "dockerd pid $pid still alive after ${TIMEOUT}s: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$(( waited + 1 ))
    done
    echo "dockerd stopped after $(( waited / 10 )).$(( waited % 10 ))s" >&2
else
    echo "no dockerd running for $DIR" >&2
fi

# A killed dockerd can leave its managed containerd behind: stop only the one whose socket
# lives in this DIR.
for p in $(pgrep -x containerd || true); do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "$DIR/exec/containerd"; then
        echo "stopping leftover containerd pid $p" >&2
        kill -TERM "$p" 2>/dev/null || true
    fi
done

rm -f "$PIDFILE" "$DIR/docker.sock"

if [ "$PURGE" = 1 ]; then
    # Mounts (overlay layers, shm) must be gone before the data root can be removed.
    if grep -q " $DIR/" /proc/mounts; then
        grep " $DIR/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
    fi
    rm -rf "$DIR"
    echo "removed $DIR" >&2
fi
