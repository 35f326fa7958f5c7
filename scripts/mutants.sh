#!/usr/bin/env bash
# Mutation testing of the contract's pure cores with cargo-mutants.
#
#   scripts/mutants.sh                      # every file in FILES below
#   scripts/mutants.sh src/bearer.rs        # one (or more) files only
#   scripts/mutants.sh --shard 1/4          # one shard of the mutants (cargo-mutants' --shard)
#   scripts/mutants.sh -j 2                 # parallel build/test jobs (default 1, or $MUTANTS_JOBS)
#   scripts/mutants.sh --list               # list the mutants, run nothing
#   scripts/mutants.sh ... -- --re advance  # anything after `--` goes to cargo-mutants as is
#
# Each mutant is built in a copy of the tree (never in this one) and judged by
# the library's fast tests only: `cargo test --package tokengate --lib` (unit +
# property tests). `--lib` goes in as a cargo argument, not after `--`, so that
# the build step (`cargo test --no-run`) skips the integration tests too.
# Results go to $MUTANTS_OUT (default target/mutants)/mutants.out/. The script
# prints caught / missed / unviable / timeout per file and exits non-zero if
# any mutant was missed or cargo-mutants could not run. A timeout is a mutant
# that made the tests hang: detected, so not a failure.
set -euo pipefail

# The files to mutate (paths relative to the repository root).
FILES=(
    src/limit/window.rs
    src/limit/policy.rs
    src/limit/lease.rs
    src/bearer.rs
    src/token.rs
    src/response.rs
)

# Equivalent mutants: no test can tell them apart from the original, because
# they change only how much work is done, never a result. One regex each
# (matched against the names `--list` prints), with the reason; TESTING.md
# lists the same. Keep this list short and justified.
EQUIVALENT=(
    # advance, `self.sum > 0 && self.oldest < first`: the rescan from `first`
    # finds the same oldest non-empty bucket (or, with nothing counted, sets a
    # value nothing reads), so rescanning more often changes no result.
    '^src/limit/window\.rs:[0-9]+:[0-9]+: replace && with \|\| in WindowState::advance$'
    '^src/limit/window\.rs:289:21: replace > with >= in WindowState::advance$'
    '^src/limit/window\.rs:[0-9]+:[0-9]+: replace < with <= in WindowState::advance$'
    # Rebuilding a plan's header values instead of reusing them gives the same bytes.
    '^src/response\.rs:[0-9]+:[0-9]+: replace PolicyHeaders::matches -> bool with false$'
    # At n = 10,000 the table and HeaderValue::from(n) give the same value.
    '^src/response\.rs:[0-9]+:[0-9]+: replace > with >= in count_value$'
    # letter | digit | '-' | '_' are disjoint classes, so `^` and `|` agree.
    '^src/token\.rs:422:(12|20|34): replace \| with \^ in is_url_safe_base64$'
)

# Library tests that cannot judge these files and fail under load for their
# own reasons (a flaky test would "catch" mutants at random). One name each;
# none today (the clock test that needed a thread scheduled in time is gone
# with the clock's thread).
SKIP_TESTS=()

PACKAGE=tokengate
jobs="${MUTANTS_JOBS:-1}"
shard=""
list=0
files=()
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --shard) shard="${2:?--shard needs k/n}"; shift 2 ;;
        --shard=*) shard="${1#--shard=}"; shift ;;
        -j | --jobs) jobs="${2:?-j needs a number}"; shift 2 ;;
        --jobs=*) jobs="${1#--jobs=}"; shift ;;
        --list) list=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) echo "mutants.sh: unknown option $1 (pass cargo-mutants options after --)" >&2; exit 1 ;;
        *) files+=("$1"); shift ;;
    esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ ${#files[@]} -gt 0 ] || files=("${FILES[@]}")
for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "mutants.sh: no such file: $f" >&2; exit 1; }
done

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "==> cargo-mutants is missing: cargo install cargo-mutants --locked" >&2
    cargo install cargo-mutants --locked
fi

out="${MUTANTS_OUT:-$root/target/mutants}"
mkdir -p "$out"
args=(--package "$PACKAGE" --cargo-arg=--lib --jobs "$jobs" --output "$out"
    # A loaded 2-core machine makes the baseline's time a poor guide; a real hang still ends.
    --minimum-test-timeout "${MUTANTS_MIN_TIMEOUT:-60}")
for f in "${files[@]}"; do args+=(--file "$f"); done
for re in "${EQUIVALENT[@]}"; do args+=(--exclude-re "$re"); done
[ -n "$shard" ] && args+=(--shard "$shard")

if [ "$list" = 1 ]; then
    exec cargo mutants "${args[@]}" --list "${extra[@]}"
fi

# Each build directory gets its own target/: a shared CARGO_TARGET_DIR would
# let mutated builds overwrite the caller's artifacts.
unset CARGO_TARGET_DIR
# The same property-test cases for every mutant and every run, so a verdict
# does not depend on luck or on the order mutants ran in: a fixed seed, and no
# failure files (one mutant's saved counterexample would be replayed against
# the next mutants in the same build directory).
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-1127}"
export PROPTEST_DISABLE_FAILURE_PERSISTENCE=1
test_args=(--)
for t in "${SKIP_TESTS[@]}"; do test_args+=(--skip "$t"); done
start=$SECONDS
echo "==> cargo mutants ${args[*]} ${extra[*]} -- ${test_args[*]}" >&2
status=0
cargo mutants "${args[@]}" "${extra[@]}" -- "${test_args[@]}" || status=$?
elapsed=$((SECONDS - start))

# cargo-mutants: 0 all caught, 2 some missed, 3 some timed out; anything else means it could not run.
case "$status" in
    0 | 2 | 3) ;;
    *) echo "mutants.sh: cargo-mutants failed (exit $status); see $out/mutants.out/" >&2; exit "$status" ;;
esac

results="$out/mutants.out"
count() { # count <outcome>... <file>: lines of <outcome>.txt naming <file>
    local file="${*: -1}" n=0 outcome
    for outcome in "${@:1:$#-1}"; do
        [ -f "$results/$outcome.txt" ] || continue
        n=$((n + $(grep -c "^${file//./\\.}:" "$results/$outcome.txt" || true)))
    done
    echo "$n"
}
echo
printf '%-22s %7s %7s %9s %8s\n' file caught missed unviable timeout
total_missed=0
for f in "${files[@]}"; do
    missed=$(count missed "$f")
    total_missed=$((total_missed + missed))
    # With `-- --iterate`, mutants caught by the previous run are not rerun.
    printf '%-22s %7s %7s %9s %8s\n' "$f" "$(count caught previously_caught "$f")" "$missed" \
        "$(count unviable "$f")" "$(count timeout "$f")"
done
echo "(equivalent mutants are excluded: see EQUIVALENT above and TESTING.md; ${elapsed}s${shard:+, shard $shard})"
if [ "$total_missed" -gt 0 ]; then
    echo
    echo "MISSED (no fast test fails on these):"
    sed 's/^/  /' "$results/missed.txt"
    exit 2
fi
