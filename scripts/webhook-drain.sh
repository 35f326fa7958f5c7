#!/usr/bin/env bash
# Webhook delivery throughput: N events (token.created) are written to the
# outbox by a server that does not deliver yet; it is killed (-9), and a
# second server on the same SQLite file drains the backlog to
# examples/webhook_receiver.py, which verifies each with standardwebhooks.
# Prints the time from the second server's start to the last verified event.
#
#   N=1000 scripts/webhook-drain.sh            # the debug binary
#   BIN=target/release/tokengate scripts/webhook-drain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
BIN=${BIN:-target/debug/tokengate}
PY=${PY:-clients/.venv/bin/python}
PORT=${PORT:-18991}
[ -x "$BIN" ] || cargo build -p tokengate-server
dir=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
echo whsec_AAAA > "$dir/secret.txt"
"$PY" examples/webhook_receiver.py --port 0 --secret-file "$dir/secret.txt" --out "$dir/events.jsonl" > "$dir/receiver.out" &
pids+=($!)
until grep -q listening "$dir/receiver.out" 2>/dev/null; do sleep 0.05; done
receiver=$(sed -n 's/listening on //p' "$dir/receiver.out")
admin=bench-admin-token-0123456789
serve() {
  env -i PATH="$PATH" DATABASE_URL="sqlite://$dir/tg.db" BIND_ADDR="127.0.0.1:$PORT" ADMIN_TOKEN=$admin \
    ARGON2_MEMORY_KIB=64 ARGON2_ITERATIONS=1 WEBHOOK_ALLOW_PRIVATE_URLS=true RUST_LOG=warn \
    WEBHOOK_POLL_MILLIS="$1" "$BIN" serve 2>> "$dir/server.log" &
  pids+=($!)
  until curl -sf "localhost:$PORT/health" >/dev/null; do sleep 0.05; done
}
serve 600000
first=${pids[-1]}
auth="Authorization: Bearer $admin"
curl -sf -X PUT "localhost:$PORT/admin/accounts/acct" -H "$auth" -d '{"plan": "pro"}' >/dev/null
curl -sf -X POST "localhost:$PORT/admin/webhooks" -H "$auth" -d "{\"url\": \"http://127.0.0.1:$receiver/hook\"}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["secret"])' > "$dir/secret.txt"
for i in $(seq "$N"); do
  curl -sf -o /dev/null -X POST "localhost:$PORT/admin/accounts/acct/tokens" -H "$auth" -d "{\"name\": \"t$i\"}"
done
kill -9 "$first"; wait "$first" 2>/dev/null || true
start=$(date +%s.%N)
serve 50
until [ "$(wc -l < "$dir/events.jsonl" 2>/dev/null || echo 0)" -ge "$N" ]; do sleep 0.02; done
end=$(date +%s.%N)
verified=$(grep -c '"verified": true' "$dir/events.jsonl")
echo "$N events drained in $(echo "$end - $start" | bc) s (server start included); $verified verified"
