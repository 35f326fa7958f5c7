#!/usr/bin/env bash
# Fuzz smoke test: runs each cargo-fuzz target in fuzz/ for N seconds.
#
#   scripts/fuzz-smoke.sh [SECONDS]        # default 30 (or $FUZZ_SECONDS)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Without
# them it says so loudly and runs the stable equivalent instead
# (`cargo test --test fuzz_equivalent`: the same properties, driven by proptest);
# set FUZZ_SMOKE_REQUIRED=1 to fail instead. Exits non-zero on any crash or
# failed property; a crashing input is kept in fuzz/artifacts/<target>/.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-30}}"
root="$(cd "$(dirname "$0")/.." && pwd)"
targets=(token_parse bearer_header)

if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
    {
        echo
        echo "################################################################"
        echo "##  FUZZ SMOKE SKIPPED: 'cargo +nightly fuzz' is not available. ##"
        echo "##  Install: rustup toolchain install nightly &&                ##"
        echo "##           cargo install cargo-fuzz                           ##"
        echo "##  Running the stable proptest equivalent instead.             ##"
        echo "################################################################"
        echo
    } >&2
    if [ "${FUZZ_SMOKE_REQUIRED:-0}" = 1 ]; then
        echo "FUZZ_SMOKE_REQUIRED=1: failing." >&2
        exit 1
    fi
    cd "$root"
    exec cargo test --test fuzz_equivalent
fi

cd "$root/fuzz"
status=0
summary=()
for target in "${targets[@]}"; do
    echo "==> fuzzing $target for ${seconds}s" >&2
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    if cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>&1 | tee "$log" | tail -n 3 >&2; then
        result="ok"
    else
        result="FAILED (see fuzz/artifacts/$target/)"
        status=1
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    rm -f "$log"
    summary+=("$target: $result, $runs executions in ${seconds}s")
done

echo >&2
printf 'fuzz smoke: %s\n' "${summary[@]}" >&2
exit "$status"
