# shellcheck shell=bash
# Helpers for bench/run.sh: messages, process start/stop, readiness polling, /proc readings.
# Source it; it defines functions and a few arrays only.

# as_root, pg_bindir: the project's shared helpers, one copy for scripts/ and bench/.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

say() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }

die() {
    echo "bench: FAILED: $1" >&2
    if [[ $# -ge 2 && -s "$2" ]]; then
        echo "---- last lines of $2 ----" >&2
        tail -n 30 "$2" >&2
        echo "----" >&2
    fi
    exit 1
}

# quietly LOG COMMAND...: run COMMAND with its output appended to LOG; show LOG if it fails.
quietly() {
    local log="$1"
    shift
    if ! "$@" >>"$log" 2>&1; then
        die "$*" "$log"
    fi
}

alive() { kill -0 "$1" 2>/dev/null; }

# Processes this script started, in start order, stopped in reverse by pid.
declare -a STARTED_PIDS=()
declare -A PID_NAME=() PID_LOG=()

# start_bg NAME LOG COMMAND...: run COMMAND in the background (own session, so a Ctrl-C
# reaches only this script); sets START_PID. setsid execs here (our subshell is no group
# leader), so $! is COMMAND's own pid.
start_bg() {
    local name="$1" log="$2"
    shift 2
    : >"$log"
    setsid "$@" >>"$log" 2>&1 </dev/null &
    START_PID=$!
    STARTED_PIDS+=("$START_PID")
    PID_NAME[$START_PID]="$name"
    PID_LOG[$START_PID]="$log"
}

# stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL.
stop_pid() {
    local pid="$1" i
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

stop_started() {
    local i
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${STARTED_PIDS[$i]}"
    done
    STARTED_PIDS=()
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for DESCRIPTION PID COMMAND...: poll COMMAND every 50 ms until it succeeds; fail when
# PID (0: none) exits or after $READY_TIMEOUT seconds.
wait_for() {
    local what="$1" pid="$2" deadline=$((SECONDS + READY_TIMEOUT))
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [[ "$pid" != 0 ]] && ! alive "$pid"; then
            die "${PID_NAME[$pid]:-pid $pid} exited before $what" "${PID_LOG[$pid]:-}"
        fi
        ((SECONDS < deadline)) || die "no $what after ${READY_TIMEOUT}s" "${PID_LOG[$pid]:-}"
        sleep 0.05
    done
}

# cpu_ticks PID...: utime + stime (all threads) of the processes, in clock ticks. Fields are
# counted after the ')' that closes the command name, which may itself contain spaces.
cpu_ticks() {
    local pid line rest total=0
    local -a f
    for pid in "$@"; do
        line="$(cat "/proc/$pid/stat" 2>/dev/null)" || die "process $pid (${PID_NAME[$pid]:-?}) is gone"
        rest="${line##*) }"
        read -r -a f <<<"$rest"
        # rest starts at field 3 (state): utime is field 14 -> index 11, stime 15 -> index 12
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# status_field FIELD PID...: sum of a numeric /proc/PID/status field (VmRSS in kB, Threads).
status_field() {
    local field="$1" pid sum=0 v
    shift
    for pid in "$@"; do
        v="$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status")"
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# children PID: direct children of PID (the workers of an nginx master).
children() { pgrep -P "$1" || true; }
has_children() { [[ -n "$(children "$1")" ]]; }
