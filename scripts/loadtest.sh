#!/usr/bin/env bash
# HTTP load test of the release server: each scenario alternates a baseline
# run and a subject run (this machine is shared and noisy) and prints the
# median requests/s of each and their ratio.
#
#   scripts/loadtest.sh                 # defaults: 4 s runs, 3 pairs, ~3 minutes
#   DURATION=10 PAIRS=5 scripts/loadtest.sh
#
# Scenarios (targets from issue 5):
#   1 hot      valid cached token on /api/v1/... vs /health           >= 0.90
#   2 garbage  malformed token flood vs /health                         >= 0.90
#   3 unknown  fresh well-formed tokens with unknown ids vs /health     >= 0.50
#   4 flood    valid traffic during a wrong-secret flood on one id
#              vs the same valid traffic alone                          >= 0.50
#   5 cold     N concurrent first uses of one token -> 1 argon2 verify;
#              COLD_TOKENS distinct new tokens -> that many verifies
#   7 latency  p50/p99 of /health and the hot path at half of peak load
#
# Scenarios of issue 17:
#   redis      the hot path with Redis leases vs the in-memory limiter, three
#              instances on one PostgreSQL database               >= 0.85;
#              then two Redis instances at once: Redis round trips per request
#              (EVALSHA from INFO commandstats)                   <= 0.05
#   embedded   the embed example: guarded /api/v1/ping vs the open /health of
#              the same app (same body), then p50/p99 of both at half of the
#              guarded route's peak                                  >= 0.95
#   stack      the server's /health vs a bare axum app's (examples/bare.rs)
#                                                                      >= 0.85
#
# Scenarios of issues 13 and 16:
#   scope      the embed example, one token with explicit scopes: guarded
#              /api/v1/ping/scoped (requires a scope) vs /api/v1/ping (same
#              handler, no scope)                                    >= 0.99
#   versus     this build's server against another build's (OTHER_BIN_DIR):
#              /health and the hot path, each build on its own database
#              (ratio this / other; a regression check)             >= 0.97
#
#   SCENARIOS=versus OTHER_BIN_DIR=/work/old/target/release scripts/loadtest.sh
#
# Scenario of issue 24 (not in the default set; needs nginx):
#   proxy      nginx -> upstream (examples/bare.rs) vs nginx + tokengate
#              forward auth (the shipped deploy/nginx/tokengate.conf, a
#              cached token, keepalive to tokengate) -> the same upstream
#                                                                  >= 0.60
#              and the same config in front of a forward-auth server that
#              does nothing (a second examples/bare, an empty 200): what
#              nginx's auth subrequest costs by itself, the ceiling of any
#              forward-auth server on this machine (noop vs direct), and
#              tokengate against that ceiling (tokengate vs noop); a flood
#              of 401s through nginx (keepalive to tokengate kept); then
#              p50/p99 of direct and tokengate at 4 connections
#
#   SCENARIOS=proxy scripts/loadtest.sh
#
# Scenarios of issue 29 (not in the default set; quote them with
# WRK_THREADS=2 CONNECTIONS=64):
#   peer     the embed example's guarded /api/v1/ping against (1) what an
#            axum user would assemble instead (crates/tokengate-peer: a
#            from_fn SHA-256 + HashMap lookup in front of tower_governor,
#            same handler)                                          >= 1.10
#            and (2) the same app's /floor: the handler plus the five
#            rate-limit headers as static values, no gate           >= 0.97
#            (all three with the same Authorization header)
#   limited  a 429 flood (a token whose hour is spent) vs the 200 hot path
#                                                                   >= 1.00
#   storm    restart storm: STORM_TOKENS known tokens (default 1,000), the
#            server restarted, then each token's first request, 64 at a
#            time; the time it takes against 1.2 x tokens x one argon2
#            verify / cores, and the p99 of /health and of a cached token
#            probed meanwhile                                    <= 10 ms
#
#   SCENARIOS="peer limited" WRK_THREADS=2 CONNECTIONS=64 PAIRS=5 scripts/loadtest.sh
#   SCENARIOS=storm scripts/loadtest.sh
#
#   SCENARIOS="embedded stack" WRK_THREADS=2 CONNECTIONS=64 scripts/loadtest.sh
#   BIN_DIR=/tmp/old scripts/loadtest.sh   # binaries built elsewhere (tokengate,
#                                          # examples/embed, examples/bare); no build
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-4}
PAIRS=${PAIRS:-3}
CONNECTIONS=${CONNECTIONS:-32}
WRK_THREADS=${WRK_THREADS:-1}
COLD_TOKENS=${COLD_TOKENS:-300}
STORM_TOKENS=${STORM_TOKENS:-1000}
PORT=${PORT:-18080}
export RUST_LOG=${RUST_LOG:-info}
BASE="http://127.0.0.1:$PORT"
ADMIN="loadtest-admin-token-$(date +%s%N)"

SCENARIOS=${SCENARIOS:-hot garbage unknown flood cold latency redis embedded stack scope}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
need() { command -v "$1" >/dev/null 2>&1; }
need wrk || { echo "installing wrk" >&2; apt-get install -y wrk >/dev/null; }
if want cold || want latency || want embedded; then
  need oha || { echo "installing oha (cargo install, a few minutes once)" >&2; cargo install oha --locked >/dev/null; }
fi
need python3 || { echo "python3 is required" >&2; exit 1; }

if [ -z "${BIN_DIR:-}" ]; then
  BIN_DIR=target/release
  cargo build --release --quiet
  if want embedded || want stack || want scope || want proxy || want peer; then cargo build --release --examples -p tokengate --quiet; fi
  if want peer; then cargo build --release -p tokengate-peer --quiet; fi
fi
tmp=$(mktemp -d)
server_pid=""
example_pids=()
cleanup() {
  [ -n "$server_pid" ] && { kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true; }
  for pid in "${example_pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

start_server() { # (again, on the same database: a restart)
  DATABASE_URL="sqlite://$tmp/loadtest.db" BIND_ADDR="127.0.0.1:$PORT" ADMIN_TOKEN="$ADMIN" \
    "$BIN_DIR/tokengate" serve 2>>"$tmp/server.log" &
  server_pid=$!
  for _ in $(seq 100); do curl -fs "$BASE/health" >/dev/null && break; sleep 0.1; done
}
start_server

admin() { curl -fsS -X "$1" "$BASE$2" -H "Authorization: Bearer $ADMIN" ${3:+-d "$3"}; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
metric() { curl -fs "$BASE/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# A plan whose limit is never reached, so every request takes the admit path.
admin PUT /admin/plans/loadtest '{"api_access": true, "requests_per_hour": 4000000000}' >/dev/null
admin PUT /admin/accounts/acct_load '{"plan": "loadtest"}' >/dev/null
HOT=$(admin POST /admin/accounts/acct_load/tokens '{"name": "hot"}' | json '["data"]["token"]')
VICTIM=$(admin POST /admin/accounts/acct_load/tokens '{"name": "victim"}' | json '["data"]["token"]')
VICTIM_ID=${VICTIM:4:20}
API="$BASE/api/v1/external_tests/providers"
curl -fs "$API" -H "Authorization: Bearer $HOT" >/dev/null   # cache it

# CPU_PID=<pid> rps ... measures another process than the server.
server_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${CPU_PID:-$server_pid}/stat"; }
rps() { # wrk args... -> requests/s; also appends server CPU µs per request to $tmp/cpu
  local t0 t1 out rate
  t0=$(server_cpu_ticks)
  out=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$@")
  t1=$(server_cpu_ticks)
  rate=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
  python3 -c "import sys; print(f'{(int(sys.argv[2]) - int(sys.argv[1])) * 1e6 / 100 / (float(sys.argv[3]) * $DURATION):.2f}')" \
    "$t0" "$t1" "$rate" >>"$tmp/cpu"
  echo "$rate"
}
median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.3f}')" "$1" "$2"; }

declare -A RESULT
compare() { # name target baseline-cmd subject-cmd
  local name=$1 target=$2 base_cmd=$3 subject_cmd=$4 b s i bases=() subjects=() base_cpu=() subject_cpu=()
  for i in $(seq "$PAIRS"); do
    # ABBA order, so drift in the machine's load does not favour either side.
    : >"$tmp/cpu"
    if ((i % 2)); then b=$(eval "$base_cmd"); s=$(eval "$subject_cmd"); mapfile -t c <"$tmp/cpu"; base_cpu+=("${c[0]}"); subject_cpu+=("${c[-1]}")
    else s=$(eval "$subject_cmd"); b=$(eval "$base_cmd"); mapfile -t c <"$tmp/cpu"; subject_cpu+=("${c[0]}"); base_cpu+=("${c[-1]}"); fi
    bases+=("${b%.*}"); subjects+=("${s%.*}")
  done
  local mb ms r cb cs
  mb=$(median "${bases[@]}"); ms=$(median "${subjects[@]}"); r=$(ratio "$ms" "$mb")
  cb=$(median "${base_cpu[@]}"); cs=$(median "${subject_cpu[@]}")
  printf '%-8s baseline %7.0f req/s  subject %7.0f req/s  ratio %s (%s)  server CPU/request %.1f -> %.1f us\n' \
    "$name" "$mb" "$ms" "$r" "$([ "$target" = - ] && echo "no target" || echo "target >= $target")" "$cb" "$cs"
  printf '         runs: %s | %s\n' "${bases[*]}" "${subjects[*]}"
  RESULT[$name]=$r
}

echo "tokengate load test: $(nproc) cores, wrk -t$WRK_THREADS -c$CONNECTIONS, ${DURATION}s runs, $PAIRS alternating pairs, RUST_LOG=$RUST_LOG"
want hot && compare hot 0.90 "rps $BASE/health" "rps -H 'Authorization: Bearer $HOT' $API"
want garbage && compare garbage 0.90 "rps $BASE/health" "rps -H 'Authorization: Bearer iit_garbage' $API"
# Both sides run the same Lua token generator, so its client-side cost cancels out.
polls_before=$(metric tokengate_feed_polls_total)
want unknown && compare unknown 0.50 "TARGET_PATH=/health rps -s scripts/random_token.lua $BASE/health" \
  "rps -s scripts/random_token.lua $API"
want unknown && echo "         change-feed polls during the unknown-id runs: $(( $(metric tokengate_feed_polls_total) - polls_before )) over $((PAIRS * DURATION)) s of flood (no per-request lookups)"

# Valid traffic alone, then the same with a wrong-secret flood on the victim's id.
flood_run() {
  TOKEN_ID=$VICTIM_ID wrk -t1 -c"$CONNECTIONS" -d"$((DURATION + 2))s" -s scripts/random_token.lua "$API" \
    | awk '/^Requests\/sec/ { print $2 }' >>"$tmp/flood_rates" &
  local flood=$!
  sleep 1
  rps -H "Authorization: Bearer $HOT" "$API"
  wait "$flood"
}
if want flood; then
  verifies_before=$(metric tokengate_argon2_verify_seconds_count)
  compare flood 0.50 "rps -H 'Authorization: Bearer $HOT' $API" "flood_run"
  verifies_after=$(metric tokengate_argon2_verify_seconds_count)
  echo "         argon2 verifications during all floods: $((verifies_after - verifies_before)) (throttle: 10 per id per minute)"
  echo "         flood rates (wrong secrets/s, all answered 401/429): $(tr '\n' ' ' <"$tmp/flood_rates")"
fi

if want cold; then
COLD=$(admin POST /admin/accounts/acct_load/tokens '{"name": "cold"}' | json '["data"]["token"]')
v0=$(metric tokengate_argon2_verify_seconds_count)
oha -n 200 -c 200 --no-tui --output-format quiet -H "Authorization: Bearer $COLD" "$API"
v1=$(metric tokengate_argon2_verify_seconds_count)
echo "cold     200 concurrent first uses of one token: $((v1 - v0)) argon2 verification(s) (target 1)"
python3 - "$BASE" "$ADMIN" "$COLD_TOKENS" "$API" <<'PY'
import json, sys, time, urllib.request, concurrent.futures as cf
base, admin, n, api = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def call(url, token, method="GET", body=None):
    req = urllib.request.Request(url, method=method, data=body, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.read()
def metric(name):
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    return float(next(l.split()[1] for l in text.splitlines() if l.split()[:1] == [name]))
t0 = time.time()
with cf.ThreadPoolExecutor(8) as pool:
    tokens = list(pool.map(lambda i: json.loads(call(base + "/admin/accounts/acct_load/tokens", admin, "POST",
        json.dumps({"name": f"cold-{i}"}).encode())[1])["data"]["token"], range(n)))
created = time.time() - t0
v0 = metric("tokengate_argon2_verify_seconds_count")
health = []
t0 = time.time()
with cf.ThreadPoolExecutor(64) as pool:
    futures = [pool.submit(call, api, t) for t in tokens]
    # /health keeps answering while argon2 runs on the blocking pool.
    while not all(f.done() for f in futures):
        s = time.time(); call(base + "/health", "x"); health.append(time.time() - s)
        time.sleep(0.05)
    statuses = [f.result()[0] for f in futures]
elapsed = time.time() - t0
v1 = metric("tokengate_argon2_verify_seconds_count")
print(f"cold     {n} distinct new tokens: {int(v1 - v0)} argon2 verifications (target {n}), "
      f"all {statuses.count(200)}/{n} 200, {elapsed:.1f} s ({n / elapsed:.0f}/s; creating them took {created:.1f} s); "
      f"/health meanwhile: max {max(health) * 1000:.1f} ms over {len(health)} probes")
PY
fi

# Latency at a fixed rate $half: "p50 <us> us  p99 <us> us".
lat() { oha -z "$((DURATION * 2))s" -q "$half" -c "$CONNECTIONS" --no-tui --output-format json --latency-correction "$@" |
  python3 -c "import json,sys; d=json.load(sys.stdin)['latencyPercentiles']; print(f\"p50 {d['p50']*1e6:7.0f} us  p99 {d['p99']*1e6:7.0f} us\")"; }

if want latency; then
# Latency at half of the peak measured above.
peak=$(rps -H "Authorization: Bearer $HOT" "$API")
half=$(python3 -c "print(int(float('$peak') / 2))")
echo "latency  at $half req/s (half of peak $peak):"
echo "         /health             $(lat "$BASE/health")"
echo "         hot path            $(lat -H "Authorization: Bearer $HOT" "$API")"
fi
if want limited; then
  # One request an hour, spent: every request of the flood is a 429 (with
  # its five headers, Retry-After and the formatted body).
  admin PUT /admin/plans/limited '{"api_access": true, "requests_per_hour": 1}' >/dev/null
  admin PUT /admin/accounts/acct_limited '{"plan": "limited"}' >/dev/null
  LIMITED=$(admin POST /admin/accounts/acct_limited/tokens '{"name": "limited"}' | json '["data"]["token"]')
  curl -fs "$API" -H "Authorization: Bearer $LIMITED" >/dev/null   # the hour's one request
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$API" -H "Authorization: Bearer $LIMITED")" = 429 ] ||
    { echo "the limited token is not refused" >&2; exit 1; }
  limited0=$(curl -fs "$BASE/metrics" | awk '$1 == "tokengate_requests_total{outcome=\"rate_limited\"}" { print $2 }')
  compare limited 1.00 "rps -H 'Authorization: Bearer $HOT' $API" "rps -H 'Authorization: Bearer $LIMITED' $API"
  limited1=$(curl -fs "$BASE/metrics" | awk '$1 == "tokengate_requests_total{outcome=\"rate_limited\"}" { print $2 }')
  echo "         429s answered during the flood runs: $(( ${limited1%.*} - ${limited0%.*} ))"
fi

if want storm; then
  # Known tokens, a restart (an empty cache), then every token's first request.
  python3 - "$BASE" "$ADMIN" "$((STORM_TOKENS + 20))" "$tmp/storm-tokens" <<'PY'
import json, sys, urllib.request, concurrent.futures as cf
base, admin, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def create(i):
    req = urllib.request.Request(base + "/admin/accounts/acct_load/tokens", method="POST",
        data=json.dumps({"name": f"storm-{i}"}).encode(), headers={"Authorization": f"Bearer {admin}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)["data"]["token"]
with cf.ThreadPoolExecutor(8) as pool:
    open(out, "w").write("\n".join(pool.map(create, range(n))))
PY
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  start_server
  python3 - "$BASE" "$API" "$HOT" "$tmp/storm-tokens" "$(nproc)" <<'PY'
import statistics, sys, time, urllib.request, concurrent.futures as cf, multiprocessing as mp
base, api, hot, path, cores = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
tokens = open(path).read().split()
sequential, storm = tokens[:20], tokens[20:]
def call(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as r:
        r.read()
        return r.status, time.perf_counter() - started
def verifies():
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    value = lambda name: float(next(l.split()[1] for l in text.splitlines() if l.split()[:1] == [name]))
    return value("tokengate_argon2_verify_seconds_count"), value("tokengate_argon2_verify_seconds_sum")
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))]
def probe(stop, results):
    # Its own process (no GIL shared with the 64 clients): /health and a
    # cached token in turn, every 5 ms.
    health, cached = [], []
    while not stop.is_set():
        health.append(call(base + "/health")[1]); cached.append(call(api, hot)[1]); time.sleep(0.005)
    results.put((health, cached))
call(api, hot)  # the probe's token, verified once after the restart
# One argon2 verify on this machine: first requests one at a time.
(c0, s0) = verifies()
for t in sequential:
    assert call(api, t)[0] == 200
(c1, s1) = verifies()
one = (s1 - s0) / (c1 - c0)
ctx = mp.get_context("fork")  # the probe function lives in this stdin script
stop, results = ctx.Event(), ctx.Queue()
prober = ctx.Process(target=probe, args=(stop, results)); prober.start()
time.sleep(0.5)
started = time.perf_counter()
with cf.ThreadPoolExecutor(64) as pool:
    answers = list(pool.map(lambda t: call(api, t), storm))
elapsed = time.perf_counter() - started
time.sleep(0.2); stop.set()
health, cached = results.get(); prober.join()
(c2, _) = verifies()
n = len(storm)
target = 1.2 * n * one / cores
firsts = [a[1] for a in answers]
print(f"storm    {n} known tokens after a restart, 64 at a time: {elapsed:.2f} s, target <= {target:.2f} s "
      f"(1.2 x {n} x {one * 1000:.1f} ms / {cores} cores): ratio {elapsed / target:.3f} (target <= 1); "
      f"{int(c2 - c1)} argon2 verifications, {sum(1 for a in answers if a[0] == 200)}/{n} 200")
print(f"         first requests: p50 {statistics.median(firsts) * 1000:.0f} ms, p99 {pct(firsts, 0.99) * 1000:.0f} ms; "
      f"one verify = mean of {int(c1 - c0)} sequential verifies")
for name, xs in (("/health", health), ("cached token", cached)):
    print(f"         {name:<13} during the storm: p50 {statistics.median(xs) * 1000:.2f} ms, "
          f"p99 {pct(xs, 0.99) * 1000:.2f} ms, max {max(xs) * 1000:.1f} ms over {len(xs)} probes (target p99 <= 10 ms)")
PY
fi

if want redis; then
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && psql -h 127.0.0.1 -U postgres -c 'select 1' >/dev/null 2>&1; then
    # Three more instances on one PostgreSQL database (a SQLite file is one
    # server's): R0 limits in memory, R1 and R2 share Redis and lease permits
    # in batches (up to 50) instead of one EVALSHA per request.
    PGDB="tokengate_loadtest_$$"
    psql -h 127.0.0.1 -U postgres -qc "create database $PGDB" >/dev/null
    instance() { # port [env...]; its pid is left in $instance_pid
      local port=$1; shift
      env DATABASE_URL="postgres://postgres@127.0.0.1/$PGDB" BIND_ADDR="127.0.0.1:$port" ADMIN_TOKEN="$ADMIN" "$@" \
        "$BIN_DIR/tokengate" serve >/dev/null 2>>"$tmp/server-redis.log" &
      instance_pid=$!; example_pids+=("$instance_pid")
    }
    R0="http://127.0.0.1:$((PORT + 11))"; R1="http://127.0.0.1:$((PORT + 12))"; R2="http://127.0.0.1:$((PORT + 13))"
    instance $((PORT + 11)); r0_pid=$instance_pid
    for _ in $(seq 100); do curl -fs "$R0/health" >/dev/null && break; sleep 0.1; done
    with_redis=(REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX="loadtest-$$")
    instance $((PORT + 12)) "${with_redis[@]}"; r1_pid=$instance_pid
    instance $((PORT + 13)) "${with_redis[@]}"; r2_pid=$instance_pid
    pg_admin() { curl -fsS -X "$1" "$R0$2" -H "Authorization: Bearer $ADMIN" ${3:+-d "$3"}; }
    pg_admin PUT /admin/plans/loadtest '{"api_access": true, "requests_per_hour": 4000000000}' >/dev/null
    pg_admin PUT /admin/accounts/acct_load '{"plan": "loadtest"}' >/dev/null
    PGHOT=$(pg_admin POST /admin/accounts/acct_load/tokens '{"name": "hot"}' | json '["data"]["token"]')
    for base in "$R0" "$R1" "$R2"; do
      for _ in $(seq 100); do curl -fs "$base/health" >/dev/null && break; sleep 0.1; done
      curl -fs "$base/api/v1/external_tests/providers" -H "Authorization: Bearer $PGHOT" >/dev/null
    done
    # The same hot request with the in-memory limiter and with Redis leases
    # (each side's CPU is its own server's).
    compare redis 0.85 "CPU_PID=$r0_pid rps -H 'Authorization: Bearer $PGHOT' $R0/api/v1/external_tests/providers" \
      "CPU_PID=$r1_pid rps -H 'Authorization: Bearer $PGHOT' $R1/api/v1/external_tests/providers"
    # Both Redis instances under load at once, one shared window.
    evalsha() { redis-cli -h 127.0.0.1 info commandstats | awk -F'[:=,]' '/^cmdstat_evalsha:/ { print $3 }'; }
    served() { curl -fs "$1/metrics" | awk '$1 == "tokengate_requests_total{outcome=\"ok\"}" { print $2 }'; }
    e0=$(evalsha); e0=${e0:-0}; s0=$(( $(served "$R1") + $(served "$R2") ))
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "Authorization: Bearer $PGHOT" "$R1/api/v1/external_tests/providers" >"$tmp/wrk1" &
    wrk_pid=$!
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "Authorization: Bearer $PGHOT" "$R2/api/v1/external_tests/providers" >"$tmp/wrk2"
    wait "$wrk_pid"
    e1=$(evalsha); s1=$(( $(served "$R1") + $(served "$R2") ))
    echo "leases   two Redis instances at once: $(awk '/^Requests\/sec/ { print $2 }' "$tmp/wrk1") + $(awk '/^Requests\/sec/ { print $2 }' "$tmp/wrk2") req/s"
    echo "         Redis round trips per authenticated request: $(python3 -c "print(f'{($e1 - $e0) / max(1, $s1 - $s0):.4f}')") ($((e1 - e0)) EVALSHA for $((s1 - s0)) requests)"
    kill "$r0_pid" "$r1_pid" "$r2_pid"; wait "$r0_pid" "$r1_pid" "$r2_pid" 2>/dev/null || true
    psql -h 127.0.0.1 -U postgres -qc "drop database $PGDB" >/dev/null || true
    grep -q "panicked" "$tmp/server-redis.log" && { echo "an instance's log shows a panic" >&2; exit 1; }
  else
    echo "redis    SKIPPED: needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432"
  fi
fi
# Starts an example on a port: start_example NAME PORT [VAR=value...]; its
# pid is left in $example_pid, its stdout in $tmp/NAME.out.
start_example() {
  local name=$1 port=$2; shift 2
  env BIND_ADDR="127.0.0.1:$port" "$@" "$BIN_DIR/examples/$name" >"$tmp/$name.out" 2>"$tmp/$name.log" &
  example_pid=$!; example_pids+=("$example_pid")
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
}

if want embedded || want scope || want peer; then
  # The embed example, once for both scenarios; a limit that is never reached.
  EPORT=$((PORT + 2)); EBASE="http://127.0.0.1:$EPORT"
  start_example embed "$EPORT" DEMO_REQUESTS_PER_HOUR=4000000000 RUST_LOG=info
  embed_pid=$example_pid
fi

if want embedded || want peer; then
  ETOKEN=$(sed -n "s/.*Bearer \([^']*\)'.*/\1/p" "$tmp/embed.out" | head -1)
  curl -fs "$EBASE/api/v1/ping" -H "Authorization: Bearer $ETOKEN" >/dev/null   # cache it
fi

if want embedded; then
  # /health (open) and /api/v1/ping (guarded) answer the same body.
  compare embedded 0.95 "CPU_PID=$embed_pid rps $EBASE/health" \
    "CPU_PID=$embed_pid rps -H 'Authorization: Bearer $ETOKEN' $EBASE/api/v1/ping"
  peak=$(CPU_PID=$embed_pid rps -H "Authorization: Bearer $ETOKEN" "$EBASE/api/v1/ping")
  half=$(python3 -c "print(int(float('$peak') / 2))")
  echo "         latency at $half req/s (half of the guarded peak $peak), alternating:"
  for i in 1 2; do
    echo "         open    /health       $(lat "$EBASE/health")"
    echo "         guarded /api/v1/ping  $(lat -H "Authorization: Bearer $ETOKEN" "$EBASE/api/v1/ping")"
  done
fi

if want peer; then
  # The peer app accepts the embed example's token; every side gets the same
  # request (the same Authorization header) and answers `ok` with the same
  # handler. Each side's CPU is its own process's.
  PPORT=$((PORT + 8)); PBASE="http://127.0.0.1:$PPORT"
  env BIND_ADDR="127.0.0.1:$PPORT" PEER_TOKENS="$ETOKEN" "$BIN_DIR/tokengate-peer" >"$tmp/peer.out" 2>"$tmp/peer.log" &
  peer_pid=$!; example_pids+=("$peer_pid")
  for _ in $(seq 100); do curl -fs "$PBASE/health" >/dev/null && break; sleep 0.1; done
  curl -fs "$PBASE/api/v1/ping" -H "Authorization: Bearer $ETOKEN" >/dev/null ||
    { echo "the peer app refuses the token" >&2; exit 1; }
  compare peer 1.10 "CPU_PID=$peer_pid rps -H 'Authorization: Bearer $ETOKEN' $PBASE/api/v1/ping" \
    "CPU_PID=$embed_pid rps -H 'Authorization: Bearer $ETOKEN' $EBASE/api/v1/ping"
  compare floor 0.97 "CPU_PID=$embed_pid rps -H 'Authorization: Bearer $ETOKEN' $EBASE/floor" \
    "CPU_PID=$embed_pid rps -H 'Authorization: Bearer $ETOKEN' $EBASE/api/v1/ping"
fi

if want stack; then
  # The same /health body from a bare axum app: what the server's stack costs.
  BPORT=$((PORT + 3)); BBASE="http://127.0.0.1:$BPORT"
  start_example bare "$BPORT"
  bare_pid=$example_pid
  compare stack 0.85 "CPU_PID=$bare_pid rps $BBASE/health" "rps $BASE/health"
fi

if want scope; then
  # One token with explicit scopes (so the lookup runs), two routes with the
  # same handler: one requires a scope the token has.
  STOKEN=$(sed -n "s/.*Bearer \([^']*\)'.*# no usage:read.*/\1/p" "$tmp/embed.out" | head -1)
  curl -fs "$EBASE/api/v1/ping/scoped" -H "Authorization: Bearer $STOKEN" >/dev/null   # cache it
  # (The query makes both requests the same length; the router ignores it.)
  compare scope 0.99 "CPU_PID=$embed_pid rps -H 'Authorization: Bearer $STOKEN' $EBASE/api/v1/ping?scoped" \
    "CPU_PID=$embed_pid rps -H 'Authorization: Bearer $STOKEN' $EBASE/api/v1/ping/scoped"
fi

if want proxy; then
  NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
  if [ -z "$NGINX" ]; then
    echo "proxy    SKIPPED: needs nginx (apt-get install nginx)"
  else
    # One nginx (one worker), three servers: straight to the upstream, and
    # the shipped forward-auth config with its addresses replaced, once in
    # front of tokengate and once in front of a forward-auth server that
    # does nothing (its own process, like tokengate; its upstreams renamed).
    UPORT=$((PORT + 5)); DPORT=$((PORT + 6)); FPORT=$((PORT + 7)); NPORT=$((PORT + 8)); XPORT=$((PORT + 9))
    start_example bare "$UPORT"
    start_example bare "$NPORT"
    ngx="$tmp/nginx"; mkdir -p "$ngx"
    sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$PORT/" -e "s/127\.0\.0\.1:3000/127.0.0.1:$UPORT/" \
      -e "s/127\.0\.0\.1:8000/127.0.0.1:$FPORT/" deploy/nginx/tokengate.conf >"$ngx/tokengate.conf"
    sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$NPORT/" -e "s/127\.0\.0\.1:3000/127.0.0.1:$UPORT/" \
      -e "s/127\.0\.0\.1:8000/127.0.0.1:$XPORT/" -e "s/tokengate_api/noop_api/g" \
      -e "s#upstream tokengate {#upstream noop_auth {#" -e "s#http://tokengate/#http://noop_auth/#" \
      deploy/nginx/tokengate.conf >"$ngx/noop.conf"
    cat >"$ngx/nginx.conf" <<NGINX
worker_processes 1;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $ngx/body; proxy_temp_path $ngx/proxy; fastcgi_temp_path $ngx/fastcgi;
  uwsgi_temp_path $ngx/uwsgi; scgi_temp_path $ngx/scgi;
  upstream direct_api { server 127.0.0.1:$UPORT; keepalive 32; }
  server {
    listen 127.0.0.1:$DPORT;
    location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://direct_api; }
  }
  include $ngx/tokengate.conf;
  include $ngx/noop.conf;
}
NGINX
    "$NGINX" -p "$ngx" -c "$ngx/nginx.conf" -g "daemon off; pid $ngx/nginx.pid; error_log $ngx/error.log;" &
    example_pids+=("$!")
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$DPORT/health" >/dev/null && break; sleep 0.1; done
    DIRECT="http://127.0.0.1:$DPORT/health"; GUARDED="http://127.0.0.1:$FPORT/health"
    NOOP="http://127.0.0.1:$XPORT/health"
    curl -fs "$GUARDED" -H "Authorization: Bearer $HOT" >/dev/null   # cache it
    curl -fs "$NOOP" >/dev/null
    # (Server CPU/request is tokengate's: none on the direct and no-op paths.)
    compare proxy 0.60 "rps $DIRECT" "rps -H 'Authorization: Bearer $HOT' $GUARDED"
    compare noop - "rps $DIRECT" "rps -H 'Authorization: Bearer $HOT' $NOOP"
    compare vs-noop - "rps -H 'Authorization: Bearer $HOT' $NOOP" "rps -H 'Authorization: Bearer $HOT' $GUARDED"
    # Denials through nginx: 401s, each an answer without a body from
    # tokengate, so nginx keeps its connection (TIME_WAIT counts the ones it
    # closed).
    closed() { awk -v p="$(printf ':%04X' "$PORT")" '$3 ~ p"$" && $4 == "06"' /proc/net/tcp | wc -l; }
    before=$(closed)
    denied=$(rps -H 'Authorization: Bearer iit_not-a-real-token' "$GUARDED")
    echo "         401s through nginx: $denied req/s, $(( $(closed) - before )) connections to tokengate closed by nginx"
    # Closed-loop latency at 4 connections: "p50 <us> us  p99 <us> us" from wrk --latency.
    wlat() { wrk -t1 -c4 -d"${DURATION}s" --latency "$@" | python3 -c '
import re, sys
text = sys.stdin.read()
def us(label):
    value, unit = re.search(r"^\s*" + label + r"%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
p50, p99 = us("50"), us("99")
print(f"p50 {p50:7.0f} us  p99 {p99:7.0f} us")'; }
    echo "         latency at 4 connections, alternating:"
    for i in 1 2; do
      echo "         nginx -> upstream                 $(wlat "$DIRECT")"
      echo "         nginx + forward auth -> upstream  $(wlat -H "Authorization: Bearer $HOT" "$GUARDED")"
    done
  fi
fi

if want versus; then
  if [ -z "${OTHER_BIN_DIR:-}" ]; then
    echo "versus   SKIPPED: set OTHER_BIN_DIR to another build's target/release"
  else
    # Another build's server on its own database and port, the same setup.
    OPORT=$((PORT + 4)); OBASE="http://127.0.0.1:$OPORT"
    DATABASE_URL="sqlite://$tmp/other.db" BIND_ADDR="127.0.0.1:$OPORT" ADMIN_TOKEN="$ADMIN" \
      "$OTHER_BIN_DIR/tokengate" serve 2>"$tmp/server-other.log" &
    other_pid=$!; example_pids+=("$other_pid")
    for _ in $(seq 100); do curl -fs "$OBASE/health" >/dev/null && break; sleep 0.1; done
    oadmin() { curl -fsS -X "$1" "$OBASE$2" -H "Authorization: Bearer $ADMIN" ${3:+-d "$3"}; }
    oadmin PUT /admin/plans/loadtest '{"api_access": true, "requests_per_hour": 4000000000}' >/dev/null
    oadmin PUT /admin/accounts/acct_load '{"plan": "loadtest"}' >/dev/null
    OHOT=$(oadmin POST /admin/accounts/acct_load/tokens '{"name": "hot"}' | json '["data"]["token"]')
    OAPI="$OBASE/api/v1/external_tests/providers"
    curl -fs "$OAPI" -H "Authorization: Bearer $OHOT" >/dev/null   # cache it
    echo "         other build: $OTHER_BIN_DIR (baseline) vs this build: $BIN_DIR (subject)"
    compare v-health 0.97 "CPU_PID=$other_pid rps $OBASE/health" "rps $BASE/health"
    compare v-hot 0.97 "CPU_PID=$other_pid rps -H 'Authorization: Bearer $OHOT' $OAPI" \
      "rps -H 'Authorization: Bearer $HOT' $API"
  fi
fi

grep -q "panicked" "$tmp/server.log" && { echo "server log shows a panic" >&2; exit 1; }
echo "done"
