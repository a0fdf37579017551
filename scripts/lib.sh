# shellcheck shell=bash
# Helpers shared by scripts/*.sh and bench/: messages, background processes started and
# stopped in order, readiness polling, and the Redis and PostgreSQL servers they run.
# Source it; it defines functions, REPO_ROOT and the variables below only.

# shellcheck disable=SC2034  # used by the scripts that source this file
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# How a script names itself in failures ("demo: FAILED: …"); set it before sourcing.
SCRIPT_NAME="${SCRIPT_NAME:-$(basename "$0" .sh)}"
# Seconds wait_for polls before it gives up.
READY_TIMEOUT="${READY_TIMEOUT:-30}"

# Processes start_bg started, in start order; by pid: their name, log, and the signal that
# stops them (default TERM). PID_DIR, when set, gets a NAME.pid file for each.
declare -a STARTED_PIDS=()
declare -A PID_NAME=() PID_LOG=() STOP_SIGNAL=()
# What stop_started found: the exit status of each pid, and the pids that did not exit 0.
declare -A EXIT_STATUS=()
declare -a STOPPED_BADLY=()

say() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }

# Print the last lines of a log file, framed, to stderr.
show_log() {
    local log="$1"
    [[ -s "$log" ]] || { echo "   (${log#"$REPO_ROOT"/} is empty)" >&2; return 0; }
    echo "---- last lines of ${log#"$REPO_ROOT"/} ----" >&2
    tail -n 30 "$log" >&2
    echo "----" >&2
}

# die MESSAGE [LOG]: report a failure (with the log's tail) and exit 1.
die() {
    echo "$SCRIPT_NAME: FAILED: $1" >&2
    [[ $# -lt 2 || -z "$2" ]] || show_log "$2"
    exit 1
}

# quietly LOG COMMAND...: run COMMAND with its output appended to LOG; show LOG if it fails.
quietly() {
    local log="$1"
    shift
    "$@" >>"$log" 2>&1 || die "$*" "$log"
}

alive() { kill -0 "$1" 2>/dev/null; }

# on_exit FUNCTION: run FUNCTION when the script exits, also after Ctrl-C, SIGTERM or SIGHUP
# (which exit with status 128 + the signal number, so FUNCTION sees why). FUNCTION should
# start with `trap - EXIT INT TERM HUP` so it runs once.
on_exit() {
    # shellcheck disable=SC2064  # the function's name, expanded now on purpose
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# start_bg NAME LOG COMMAND...: run COMMAND in the background, stdout and stderr to LOG; sets
# START_PID. setsid puts it in its own session, so a Ctrl-C reaches only the script, which
# then stops everything in order; setsid execs (our subshell is no group leader), so $! is
# COMMAND's own pid.
start_bg() {
    local name="$1" log="$2"
    shift 2
    : >"$log"
    setsid "$@" >>"$log" 2>&1 </dev/null &
    START_PID=$!
    STARTED_PIDS+=("$START_PID")
    PID_NAME[$START_PID]="$name"
    PID_LOG[$START_PID]="$log"
    [[ -z "${PID_DIR:-}" ]] || echo "$START_PID" >"$PID_DIR/$name.pid"
}

# stop_pid PID [SIGNAL]: SIGNAL (default TERM), wait up to 10 s, then SIGKILL; returns the
# exit status of our child PID.
stop_pid() {
    local pid="$1" sig="${2:-TERM}" i
    if alive "$pid"; then
        kill "-$sig" "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            echo "$SCRIPT_NAME: ${PID_NAME[$pid]:-pid $pid} did not stop after SIG$sig; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null
}

# Stops what start_bg started, last first, each with its STOP_SIGNAL; fills STOPPED_BADLY.
stop_started() {
    local i pid name sig rc
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        pid="${STARTED_PIDS[$i]}"
        name="${PID_NAME[$pid]}" sig="${STOP_SIGNAL[$pid]:-TERM}"
        if alive "$pid"; then
            say "stopping $name (SIG$sig)"
            stop_pid "$pid" "$sig" && rc=0 || rc=$?
            EXIT_STATUS[$pid]=$rc
            [[ $rc -eq 0 ]] || STOPPED_BADLY+=("$pid")
        fi
        [[ -z "${PID_DIR:-}" ]] || rm -f "$PID_DIR/$name.pid"
    done
    STARTED_PIDS=()
}

# wait_for DESCRIPTION PID COMMAND...: poll COMMAND every 50 ms until it succeeds; fail when
# PID (0: none) exits first, or after READY_TIMEOUT seconds.
wait_for() {
    local what="$1" pid="$2" deadline=$((SECONDS + READY_TIMEOUT)) rc
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [[ "$pid" != 0 ]] && ! alive "$pid"; then
            wait "$pid" 2>/dev/null && rc=0 || rc=$?
            die "${PID_NAME[$pid]:-pid $pid} exited (status $rc) before $what" "${PID_LOG[$pid]:-}"
        fi
        ((SECONDS < deadline)) || die "no $what after ${READY_TIMEOUT}s" "${PID_LOG[$pid]:-}"
        sleep 0.05
    done
}

# Print the newest PostgreSQL server bin directory (/usr/lib/postgresql/<major>/bin that has
# initdb and postgres). Returns 1 and prints nothing when there is none.
pg_bindir() {
    local dir best=""
    while IFS= read -r dir; do
        if [[ -x "$dir/initdb" && -x "$dir/postgres" ]]; then
            best="$dir"
        fi
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
    [[ -n "$best" ]] || return 1
    printf '%s\n' "$best"
}

# Run a command as root: directly when we are root, through sudo when it exists.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: '$*' needs root and sudo is not installed; run this script as root" >&2
        return 1
    fi
}

# Prefix for PostgreSQL server programs: initdb and postgres refuse to run as root, so as root
# they run as the postgres system user (setpriv execs, so a background one's $! is the program).
AS_PG=()
[[ $EUID -ne 0 ]] || AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)

# Describe what listens on TCP port $1 (any address); prints nothing when the port is free.
port_listener() {
    local port="$1"
    if command -v ss >/dev/null 2>&1; then
        ss -Hltnp "sport = :$port" 2>/dev/null |
            awk '{ users = ""; for (i = 6; i <= NF; i++) users = users " " $i; print $4 users }'
    elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "127.0.0.1:$port (something accepts connections)"
    fi
}

# start_redis NAME PORT DIR LOG [REDIS-SERVER ARGS...]: redis-server on 127.0.0.1:PORT without
# persistence, working in DIR; returns once it answers PING.
start_redis() {
    local name="$1" port="$2" dir="$3" log="$4"
    shift 4
    mkdir -p "$dir"
    start_bg "$name" "$log" redis-server --bind 127.0.0.1 --port "$port" --save '' \
        --appendonly no --daemonize no --dir "$dir" "$@"
    wait_for "PONG from redis-server on 127.0.0.1:$port" "$START_PID" \
        redis-cli -h 127.0.0.1 -p "$port" ping
}

# start_postgres NAME PGDATA PORT LOG [SETTING...]: a PostgreSQL cluster in PGDATA (made with
# initdb, trust auth, when PGDATA holds none of this server version) on 127.0.0.1:PORT, its
# socket in PGDATA, each SETTING passed as `-c SETTING`; returns once pg_isready says so.
# It stops with SIGINT (PostgreSQL's fast shutdown).
start_postgres() {
    local name="$1" pgdata="$2" port="$3" log="$4" bindir version setting
    shift 4
    bindir="$(pg_bindir)" || die "no PostgreSQL server under /usr/lib/postgresql/*/bin (run scripts/install-deps.sh)"
    version="$(basename "$(dirname "$bindir")")"
    if [[ -f "$pgdata/PG_VERSION" && "$(cat "$pgdata/PG_VERSION")" != "$version" ]]; then
        rm -rf "$pgdata"
    fi
    if [[ ! -f "$pgdata/PG_VERSION" ]]; then
        say "initdb $pgdata (PostgreSQL $version, trust auth)"
        rm -rf "$pgdata"
        mkdir -p "$pgdata"
        [[ $EUID -ne 0 ]] || chown postgres: "$pgdata"
        quietly "$log.initdb" "${AS_PG[@]}" "$bindir/initdb" -D "$pgdata" -U postgres --auth=trust \
            -E UTF8 --no-locale --no-sync
    fi
    local -a args=(-D "$pgdata" -p "$port" -c listen_addresses=127.0.0.1
        -c unix_socket_directories="$pgdata" -c fsync=off)
    for setting in "$@"; do args+=(-c "$setting"); done
    start_bg "$name" "$log" "${AS_PG[@]}" "$bindir/postgres" "${args[@]}"
    STOP_SIGNAL[$START_PID]=INT
    wait_for "readiness of PostgreSQL on 127.0.0.1:$port (pg_isready)" "$START_PID" \
        "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres
}
