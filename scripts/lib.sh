# shellcheck shell=bash
# Helpers shared by scripts/*.sh. Source it; it defines functions and REPO_ROOT only.

# shellcheck disable=SC2034  # used by the scripts that source this file
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

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
