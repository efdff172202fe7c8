#!/usr/bin/env bash
# Start a private Docker engine (Debian's docker.io dockerd) for the container tests.
#
#   docker/start-dockerd.sh [DIR]        (default DIR: /tmp/triton-perf-docker)
#
# Installs nothing: needs `dockerd` and a `docker` client (apt-get install docker.io).
# Socket, data root, exec root, pid file and log all live under DIR, so it neither touches nor
# needs the system's /var/lib/docker or /var/run/docker.sock. No bridge network and no
# iptables rules: containers must use host networking (--network host).
# Idempotent: if an engine already answers on DIR/docker.sock it is reused.
# On success the last line of stdout is `DOCKER_HOST=unix://DIR/docker.sock`; e.g.
#   export "$(docker/start-dockerd.sh | tail -n1)"
#
# Environment:
#   DOCKERD_STORAGE_DRIVER   force a storage driver (e.g. vfs); default: dockerd's own choice
#                            (overlay2 where the backing filesystem allows it, else a fallback)
#   DOCKERD_START_TIMEOUT    seconds to wait for the engine to answer (default 60)
#   DOCKERD_EXTRA_ARGS       extra dockerd arguments (word-split)
set -euo pipefail

DIR="${1:-/tmp/triton-perf-docker}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
SOCK="$DIR/docker.sock"
LOG="$DIR/dockerd.log"
PIDFILE="$DIR/docker.pid"
TIMEOUT="${DOCKERD_START_TIMEOUT:-60}"

# Prefer the client that ships with dockerd (same version); any client works through API
# version negotiation.
if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi

answers() { "$DOCKER" -H "unix://$SOCK" info >/dev/null 2>&1; }
# Alive and not a zombie (a killed daemon stays a zombie until its parent reaps it).
alive() {
    local st
    st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

if [ -S "$SOCK" ] && answers; then
    echo "dockerd already answers on $SOCK (reused)" >&2
    echo "DOCKER_HOST=unix://$SOCK"
    exit 0
fi

command -v dockerd >/dev/null || {
    echo "dockerd not found: install Debian's docker.io (apt-get install docker.io)" >&2
    exit 1
}
command -v "$DOCKER" >/dev/null || { echo "docker client not found" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
    echo "dockerd needs root (rootful engine); run as root" >&2
    exit 1
fi

mkdir -p "$DIR/data" "$DIR/exec"
chmod 711 "$DIR"

# A stale pid file of a dead daemon: dockerd overwrites it itself, but a live process that
# does not answer is an error we should not paper over.
if [ -f "$PIDFILE" ]; then
    oldpid="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [ -n "$oldpid" ] && alive "$oldpid"; then
        echo "dockerd pid $oldpid (from $PIDFILE) is alive but $SOCK does not answer;" \
             "stop it with docker/stop-dockerd.sh $DIR" >&2
        exit 1
    fi
    rm -f "$PIDFILE"
fi
rm -f "$SOCK"
# dockerd reuses the containerd recorded in exec/containerd/containerd.pid when that pid
# exists, and then times out waiting on its socket if it is in fact a dead (zombie) or unrelated
# process: the case right after a dockerd was SIGKILLed. Keep the pid file only for a live
# containerd of this DIR.
CPIDFILE="$DIR/exec/containerd/containerd.pid"
if [ -f "$CPIDFILE" ]; then
    cpid="$(cat "$CPIDFILE" 2>/dev/null || true)"
    if [ -z "$cpid" ] || ! alive "$cpid" \
        || ! tr '\0' ' ' <"/proc/$cpid/cmdline" 2>/dev/null | grep -q -- "$DIR/exec/containerd"; then
        rm -f "$CPIDFILE"
    fi
fi

args=(
    --host "unix://$SOCK"
    --data-root "$DIR/data"
    --exec-root "$DIR/exec"
    --pidfile "$PIDFILE"
    --bridge=none
    --iptables=false
    --ip6tables=false
    --ip-masq=false
)
if [ -n "${DOCKERD_STORAGE_DRIVER:-}" ]; then
    args+=(--storage-driver="$DOCKERD_STORAGE_DRIVER")
fi
if [ -n "${DOCKERD_EXTRA_ARGS:-}" ]; then
    # shellcheck disable=SC2206
    args+=($DOCKERD_EXTRA_ARGS)
fi

echo "starting: dockerd ${args[*]}  (log: $LOG)" >&2
start=$(date +%s)
# setsid + nohup: the daemon outlives this script and the shell (and process group) it ran in.
setsid nohup dockerd "${args[@]}" >>"$LOG" 2>&1 </dev/null &
dpid=$!

while :; do
    if answers; then
        echo "dockerd pid $dpid answers on $SOCK after $(( $(date +%s) - start ))s" >&2
        "$DOCKER" -H "unix://$SOCK" info --format \
            'server {{.ServerVersion}}, storage driver {{.Driver}}, cgroup {{.CgroupDriver}} v{{.CgroupVersion}}' >&2 || true
        echo "DOCKER_HOST=unix://$SOCK"
        exit 0
    fi
    if ! alive "$dpid"; then
        echo "dockerd exited during start-up; last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2
        exit 1
    fi
    if [ $(( $(date +%s) - start )) -ge "$TIMEOUT" ]; then
        echo "dockerd (pid $dpid) did not answer on $SOCK within ${TIMEOUT}s; last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2
        exit 1
    fi
    sleep 0.3
done
