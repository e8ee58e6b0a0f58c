#!/usr/bin/env bash
# HTTP load on loopback: the release server on its embedded defaults, wrk at 10 connections,
# requests carrying a real-shaped Exotel query. Bounded in time; stops the server when done.
#
#   bash bench/http-load.sh [DURATION_S] [CONNECTIONS]
#   RECORDS=off bash bench/http-load.sh ...     the same with decision records turned off
#   DATA_PARENT=/dev/shm bash bench/http-load.sh  the data directory on another file system
#   RATE=15000 bash bench/http-load.sh ...          a fixed request rate (oha, latency-corrected)
#                                                  instead of as fast as possible (wrk)
#   BIN=/path/to/passthru bash bench/http-load.sh  a binary built elsewhere (an A/B run of two
#                                                  builds) instead of building this checkout's
#   DATABASE=postgres://... bash bench/http-load.sh  the shared PostgreSQL store instead of the
#                                                  embedded one (the database should be empty)
#   FLOW=log bash bench/http-load.sh 15 256        the async flow (call-logger): each 200 is a
#                                                  request committed to the queue (fsync included);
#                                                  prints the queue's metrics after
#
# Needs wrk (Debian: apt-get install wrk), or with RATE, oha (cargo install oha --locked).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-15}
connections=${2:-10}
port=${PORT:-18080}
rate=${RATE:-}
if [ -n "$rate" ]; then
  command -v oha >/dev/null || { echo "oha is not installed (cargo install oha --locked)" >&2; exit 1; }
else
  command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
fi

records=${RECORDS:-on}
data=$(mktemp -d ${DATA_PARENT:+-p "$DATA_PARENT"})
config="$data/passthru.toml"
{
  [ "$records" = off ] && echo "records = false"
  printf '[[flow]]\ntenant = "demo"\nname = "ivr"\nplugin = "builtin:ivr-menu"\n'
  printf '[[flow]]\ntenant = "demo"\nname = "log"\nplugin = "builtin:call-logger"\nmode = "async"\n'
} > "$config"

bin=${BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -p passthru -j 2 >&2
  bin=${CARGO_TARGET_DIR:-target}/release/passthru
fi
database_args=()
if [ -n "${DATABASE:-}" ]; then
  database_args=(--database "$DATABASE")
  export PASSTHRU_OPERATOR_TOKEN=${PASSTHRU_OPERATOR_TOKEN:-bench-operator-token}
fi
"$bin" serve --config "$config" --data-dir "$data" --listen "127.0.0.1:$port" \
  "${database_args[@]}" 2>/tmp/passthru-load.log &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

query=$(tr -d '\n' < tests/fixtures/exotel/gather-single-key.query)
flow=${FLOW:-ivr}
url="http://127.0.0.1:$port/passthru/demo/$flow?${query}&digits=%221%22"
status=$(curl -s -o /dev/null -w '%{http_code}' "$url")
[ "$status" = 200 ] || { echo "expected 200 from the demo flow, got $status" >&2; exit 1; }

if [ -n "$rate" ]; then
  echo "== $(nproc) cores, $(uname -r), records $records, oha -c$connections -q$rate -z${duration}s, GET /passthru/demo/$flow (sample gather-single-key, digits 1)"
  oha --no-tui --latency-correction -c "$connections" -q "$rate" -z "${duration}s" "$url"
else
  echo "== $(nproc) cores, $(uname -r), records $records, wrk -t2 -c$connections -d${duration}s, GET /passthru/demo/$flow (sample gather-single-key, digits 1)"
  wrk -t2 -c"$connections" -d"${duration}s" --latency "$url"
fi
if [ "$flow" != ivr ]; then
  # Let the workers finish the backlog, so the start delays cover every request.
  for _ in $(seq 1 600); do
    depth=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^passthru_async_queue_depth /{print $2}')
    [ "$depth" = 0 ] && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/metrics" | grep -E '^passthru_async_'
fi
curl -fsS "http://127.0.0.1:$port/metrics" | grep -E '^passthru_records_(written|dropped)_total'

