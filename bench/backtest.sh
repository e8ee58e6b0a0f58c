#!/usr/bin/env bash
# Backtests beside live traffic: how long a backtest of CALLS recorded calls takes, and what it
# does to a live flow's latency while it runs.
#
# The release server, one tenant, a flow on the ivr-menu example (Rust) as version 1 and the
# vip-caller example as the candidate, version 2 (it answers many calls differently, so the
# report carries differences, up to its 1,000). Phases:
#   0. record: wrk floods the flow for RECORD_S seconds with distinct CallSids (more than CALLS
#      calls; the backtest takes the last CALLS);
#   1. live alone: wrk -t1 -cCONNS for DURATION_S, each connection pausing DELAY_MS between
#      requests (a steady load that leaves the CPU part idle, as a live server's does);
#   2a. the same load with one backtest of CALLS calls, started 2 s in;
#   2. the same load while backtests of CALLS calls run back to back.
# Prints phase 1's and 2's latency percentiles (wrk) and every backtest's calls and elapsed_ms.
#
#   bash bench/backtest.sh [CALLS] [DURATION_S]
#   BIN=/path/to/passthru bash bench/backtest.sh   a binary built elsewhere
#   CONNS=4 DELAY_MS=4 RECORD_S=4                  the live load and the recording
#   FULL=1                                         phase 3: an unthrottled live load (wrk -c8, no
#                                                  pause) alone, then beside the backtests
#
# Needs wrk, curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."

calls=${1:-10000}
duration=${2:-10}
conns=${CONNS:-4}
delay_ms=${DELAY_MS:-4}
record_s=${RECORD_S:-4}
port=${PORT:-18094}
for tool in wrk curl jq; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done

bin=${BIN:-}
target=${CARGO_TARGET_DIR:-target}
if [ -z "$bin" ]; then
  cargo build --profile production -p passthru -j 1 >&2
  bin=$target/production/passthru
fi
wasm() {
  ls -t "$target/plugins/wasm32-unknown-unknown/release/$1.wasm" \
    "target/plugins/wasm32-unknown-unknown/release/$1.wasm" 2>/dev/null | head -1
}
live_plugin=$(wasm ivr_menu)
candidate=$(wasm vip_caller)
[ -n "$live_plugin" ] && [ -n "$candidate" ] || { echo "no plugins under $target/plugins (build the host first)" >&2; exit 1; }

data=$(mktemp -d)
: > "$data/passthru.toml"
operator=bench-operator-token
PASSTHRU_OPERATOR_TOKEN=$operator "$bin" serve --config "$data/passthru.toml" --data-dir "$data" \
  --listen "127.0.0.1:$port" 2>/tmp/passthru-backtest-bench.log &
server=$!
scripts=$(mktemp -d)
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; rm -rf "$data" "$scripts"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

api() { # METHOD PATH TOKEN [curl args...]
  local method=$1 path=$2 token=$3
  shift 3
  curl -fsS -X "$method" -H "authorization: Bearer $token" "$@" "$base$path"
}
api POST /v1/tenants "$operator" -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
token=$(api POST /v1/tenants/bench/tokens "$operator" | jq -r .token)
for plugin in "$live_plugin" "$candidate"; do
  api POST /v1/plugins/menu/versions "$token" -H 'content-type: application/wasm' \
    --data-binary "@$plugin" >/dev/null
done
api PUT /v1/flows/ivr "$token" -H 'content-type: application/json' \
  -d '{"plugin":"menu","version":1,"config":{"vip_numbers":"09800000001"}}' >/dev/null

# Distinct CallSids, callers and keys, so the candidate's answers differ on some calls.
cat > "$scripts/calls.lua" <<EOF
math.randomseed(os.time())
request = function()
  local sid = string.format("%08x%08x%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff),
    math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  local caller = (math.random(0, 3) == 0) and "09800000001" or "09800000002"
  return wrk.format("GET", "/passthru/bench/ivr?CallSid=" .. sid .. "&CallFrom=" .. caller ..
    "&digits=%22" .. math.random(1, 3) .. "%22")
end
EOF
{ cat "$scripts/calls.lua"; printf 'function delay()\n  return %s\nend\n' "$delay_ms"; } > "$scripts/steady.lua"

echo "== record: wrk -t2 -c8 -d${record_s}s (distinct CallSids)"
wrk -t2 -c8 -d"${record_s}s" -s "$scripts/calls.lua" "$base" | grep -E 'Requests/sec|requests in'
sleep 3 # the record writer's last batches

# One backtest, its report kept in the file $1 with request_ms, the whole request as the client
# saw it (reading the records included; elapsed_ms counts the calls alone). Summarised by
# `summary` after the phase, so that no jq runs beside the live load.
backtest() {
  local total
  total=$(api POST /v1/flows/ivr/backtest "$token" -H 'content-type: application/json' \
    -o "$1" -w '%{time_total}' -d "{\"version\":2,\"last\":$calls}")
  echo "$total" > "$1.time"
}
summary() { # the reports in $1/*.json, in order
  local file
  for file in $(ls "$1"/*.json | sort -V); do
    jq -c --arg total "$(cat "$file.time")" \
      '{calls, agree, differ_total, skipped, unfinished, elapsed_ms,
        request_ms: (($total | tonumber) * 1000 | floor), fuel_median: .fuel.median}' "$file"
  done
}

echo "== one backtest on an idle server"
mkdir -p "$scripts/idle"
backtest "$scripts/idle/1.json"
summary "$scripts/idle"

live() {
  wrk -t1 -c"$1" -d"${duration}s" --latency -s "$2" "$base" |
    grep -E 'Requests/sec|^ +(50|75|90|99)%'
}

echo "== 1. live alone: wrk -t1 -c$conns, $delay_ms ms between a connection's requests, ${duration}s"
live "$conns" "$scripts/steady.lua"

backtests_while() { # runs backtests back to back until the file $1 exists, reports in $2
  local n=0
  mkdir -p "$2"
  while [ ! -e "$1" ]; do
    n=$((n + 1))
    backtest "$2/$n.json"
  done
}

echo "== 2a. the same, with one backtest of $calls calls 2 s in"
mkdir -p "$scripts/one"
(sleep 2; backtest "$scripts/one/1.json") &
one=$!
live "$conns" "$scripts/steady.lua"
wait "$one" || true
summary "$scripts/one" | sed 's/^/   backtest: /'

echo "== 2. the same, with backtests of $calls calls back to back"
rm -f "$scripts/stop"
backtests_while "$scripts/stop" "$scripts/phase2" &
looper=$!
live "$conns" "$scripts/steady.lua"
touch "$scripts/stop"
wait "$looper" || true
summary "$scripts/phase2" | sed 's/^/   backtest: /'

if [ -n "${FULL:-}" ]; then
  echo "== 3a. unthrottled live load alone (wrk -t1 -c8, no pause)"
  live 8 "$scripts/calls.lua"
  echo "== 3b. the same, with backtests back to back"
  rm -f "$scripts/stop"
  backtests_while "$scripts/stop" "$scripts/phase3" &
  looper=$!
  live 8 "$scripts/calls.lua"
  touch "$scripts/stop"
  wait "$looper" || true
  summary "$scripts/phase3" | sed 's/^/   backtest: /'
fi
