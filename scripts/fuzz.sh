#!/usr/bin/env bash
# Short fuzzing run of every cargo-fuzz target in fuzz/ (part of scripts/test.sh).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 15 s, every target
#
# Runs on the stable toolchain: `cargo fuzz run -s none` (no sanitizer, so no nightly-only
# -Zsanitizer flag; libFuzzer's coverage instrumentation uses only stable codegen options).
# Each target starts from its committed seed corpus fuzz/corpus/<target>/ and writes what it
# finds to a scratch directory, so the work tree stays clean. A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the run; reproduce it with
#   cd fuzz && cargo fuzz run -s none <target> artifacts/<target>/<file>
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT/fuzz"

seconds="${1:-15}"
shift || true
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is not installed: run scripts/install-deps.sh" >&2
    exit 1
fi

echo "fuzz: cargo fuzz build -s none (release, coverage-instrumented)"
build_log="$(mktemp "${TMPDIR:-/tmp}/snigate-fuzz-build.XXXXXX")"
if ! cargo fuzz build -s none >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    rm -f "$build_log"
    exit 1
fi
rm -f "$build_log"

failed=0
for target in "${targets[@]}"; do
    scratch="$(mktemp -d "${TMPDIR:-/tmp}/snigate-fuzz-$target.XXXXXX")"
    log="$scratch.log"
    if cargo fuzz run -s none "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -max_len=8192 >"$log" 2>&1; then
        echo "fuzz: $target ok: $(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1)," \
            "$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)"
    else
        failed=$((failed + 1))
        echo "fuzz: $target FAILED; last lines of its output:" >&2
        tail -n 40 "$log" >&2
    fi
    rm -rf "$scratch" "$log"
done
[[ $failed -eq 0 ]]
