# shellcheck shell=bash
# Helpers for bench/run.sh and bench/profile.sh beyond the project's shared ones (messages,
# processes, servers: scripts/lib.sh): /proc readings of the processes under test.
# Source it; it defines functions only.

# shellcheck disable=SC2034  # read by scripts/lib.sh
SCRIPT_NAME=bench
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

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
