#!/usr/bin/env bash
# Instructions the release server executes per request, counted by callgrind.
# Unlike requests/s, the count does not move with whatever else the machine
# runs, so two builds can be compared exactly (a regression hunt, a change's
# cost). It is not time: cache misses and contention are not in it.
#
#   scripts/instructions.sh                       # target/release (built if missing)
#   BIN_DIR=/tmp/new OTHER_BIN_DIR=/tmp/old scripts/instructions.sh
#                                                 # two builds, side by side
#   N=1000 scripts/instructions.sh                # requests per measurement
#
# For each build: the server runs under `valgrind --tool=callgrind` on a fresh
# SQLite file; a Python client sends N, then 2N requests on one keep-alive
# connection per route, with the counters zeroed before and dumped after
# each batch. Per request = (count of 2N - count of N) / N, so start-up,
# the first (argon2) verification and per-batch constants cancel out.
#
# Routes: /health (the stack alone), the demo API with a cached token (the
# hot path: gate, limiter, scope check, handler), with a malformed
# token (the 401 path) and with a token whose hour is spent (the 429 path).
#
# EMBEDDED=1 also measures the embed example (examples/embed.rs) and the
# load-test peer (crates/tokengate-peer), every request with the same
# Authorization header: the open /health, the /floor route (the handler plus
# five static rate-limit headers), the guarded /api/v1/ping, and the peer's
# guarded /api/v1/ping (SHA-256 + HashMap + tower_governor): the loadtest's
# `peer` scenario, without the noise.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-2000}
PORT=${PORT:-18180}
command -v valgrind >/dev/null || { echo "installing valgrind" >&2; apt-get install -y valgrind >/dev/null; }
if [ -z "${BIN_DIR:-}" ]; then
  BIN_DIR=target/release
  [ -x "$BIN_DIR/tokengate" ] || cargo build --release --quiet -p tokengate-server
  if [ -n "${EMBEDDED:-}" ]; then
    [ -x "$BIN_DIR/examples/embed" ] || cargo build --release --quiet -p tokengate --example embed
    [ -x "$BIN_DIR/tokengate-peer" ] || cargo build --release --quiet -p tokengate-peer
  fi
fi

tmp=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }
  rm -rf "$tmp"
}
trap cleanup EXIT

# One keep-alive connection, `count` GETs of `path` with an optional bearer.
send() { # port path count [token]
  python3 - "$@" <<'EOF'
import http.client, sys
port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
headers = {"Authorization": "Bearer " + sys.argv[4]} if len(sys.argv) > 4 else {}
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(count):
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.read()
conn.close()
EOF
}

# Counter of the newest dump after zeroing, `count` requests and a dump.
counted() { # port path count [token]
  callgrind_control -z "$pid" >/dev/null 2>&1
  send "$@"
  callgrind_control -d "$pid" >/dev/null 2>&1
  local newest
  newest=$(ls -t "$tmp"/callgrind.out.* | head -1)
  awk '/^(summary|totals):/ { print $2; exit }' "$newest"
}

measure() { # label bin_dir
  local label=$1 bin=$2 admin base db
  admin="instructions-admin-$(date +%s%N)"
  db="$tmp/$label.db"
  base="http://127.0.0.1:$PORT"
  DATABASE_URL="sqlite://$db" BIND_ADDR="127.0.0.1:$PORT" ADMIN_TOKEN="$admin" RUST_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out.%p" \
    "$bin/tokengate" serve 2>"$tmp/$label.log" &
  pid=$!
  for _ in $(seq 600); do curl -fs "$base/health" >/dev/null && break; sleep 0.2; done
  curl -fs "$base/health" >/dev/null || { echo "$label: server did not start" >&2; cat "$tmp/$label.log" >&2; exit 1; }
  adm() { curl -fsS -X "$1" "$base$2" -H "Authorization: Bearer $admin" ${3:+-d "$3"}; }
  adm PUT /admin/plans/bench '{"api_access": true, "requests_per_hour": 4000000000}' >/dev/null
  adm PUT /admin/accounts/acct_bench '{"plan": "bench"}' >/dev/null
  local token route=/api/v1/external_tests/providers
  token=$(adm POST /admin/accounts/acct_bench/tokens '{"name": "hot"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
  send "$PORT" "$route" 1 "$token"   # verified once (argon2), then cached
  # A token whose one request an hour is spent: every request a 429.
  local limited
  adm PUT /admin/plans/spent '{"api_access": true, "requests_per_hour": 1}' >/dev/null
  adm PUT /admin/accounts/acct_spent '{"plan": "spent"}' >/dev/null
  limited=$(adm POST /admin/accounts/acct_spent/tokens '{"name": "spent"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
  send "$PORT" "$route" 1 "$limited"
  local name path one two
  for name in health hot garbage limited; do
    case $name in
      health) set -- "$PORT" /health ;;
      hot) set -- "$PORT" "$route" "" "$token" ;;
      garbage) set -- "$PORT" "$route" "" iit_garbage ;;
      limited) set -- "$PORT" "$route" "" "$limited" ;;
    esac
    path=$2
    one=$(counted "$1" "$path" "$N" ${4:+"$4"})
    two=$(counted "$1" "$path" "$((2 * N))" ${4:+"$4"})
    printf '%-6s %-8s %8.0f instructions/request\n' "$label" "$name" \
      "$(python3 -c "print(($two - $one) / $N)")"
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
}

# The embed example and the peer under callgrind (EMBEDDED=1).
measure_embedded() { # label bin_dir
  local label=$1 bin=$2 base="http://127.0.0.1:$PORT" token name path one two
  BIND_ADDR="127.0.0.1:$PORT" DEMO_REQUESTS_PER_HOUR=4000000000 RUST_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out.%p" \
    "$bin/examples/embed" >"$tmp/$label-embed.out" 2>"$tmp/$label-embed.log" &
  pid=$!
  for _ in $(seq 600); do curl -fs "$base/health" >/dev/null && break; sleep 0.2; done
  token=$(sed -n "s/.*Bearer \([^']*\)'.*/\1/p" "$tmp/$label-embed.out" | head -1)
  send "$PORT" /api/v1/ping 1 "$token"   # verified once (argon2), then cached
  for name in health floor guarded; do
    case $name in health) path=/health ;; floor) path=/floor ;; guarded) path=/api/v1/ping ;; esac
    one=$(counted "$PORT" "$path" "$N" "$token")
    two=$(counted "$PORT" "$path" "$((2 * N))" "$token")
    printf '%-6s %-8s %8.0f instructions/request (embed example %s)\n' "$label" "$name" \
      "$(python3 -c "print(($two - $one) / $N)")" "$path"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  BIND_ADDR="127.0.0.1:$PORT" PEER_TOKENS="$token" \
    valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out.%p" \
    "$bin/tokengate-peer" >/dev/null 2>"$tmp/$label-peer.log" &
  pid=$!
  for _ in $(seq 600); do curl -fs "$base/health" >/dev/null && break; sleep 0.2; done
  send "$PORT" /api/v1/ping 1 "$token"
  one=$(counted "$PORT" /api/v1/ping "$N" "$token")
  two=$(counted "$PORT" /api/v1/ping "$((2 * N))" "$token")
  printf '%-6s %-8s %8.0f instructions/request (tokengate-peer /api/v1/ping)\n' "$label" peer \
    "$(python3 -c "print(($two - $one) / $N)")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=""
}

echo "server instructions per request (callgrind, N=$N and 2N on one keep-alive connection)"
echo "  this: $BIN_DIR"
measure this "$BIN_DIR"
[ -n "${EMBEDDED:-}" ] && measure_embedded this "$BIN_DIR"
if [ -n "${OTHER_BIN_DIR:-}" ]; then
  echo "  other: $OTHER_BIN_DIR"
  measure other "$OTHER_BIN_DIR"
  [ -n "${EMBEDDED:-}" ] && measure_embedded other "$OTHER_BIN_DIR"
fi
true
