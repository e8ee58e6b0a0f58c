#!/usr/bin/env bash
# HTTP load on loopback: the server (built with the `production` profile) on its embedded
# defaults, wrk at 10 connections, requests carrying a real-shaped Exotel query. Bounded in time;
# stops the server when done.
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
# After the load, it prints the server's CPU time (user and system, from /proc) per request
# answered 200 over the measured run, in all and by thread: tokio's (its workers, and its blocking
# pool's, which share their name), the decision-record writer, the epoch ticker, and the rest (a
# thread that ended during the run counts in the rest). It prints, too, the machine's reschedule
# and function-call interrupts per request (all CPUs, from /proc/interrupts): each is one CPU
# making another run something now, such as a thread just woken, which on a VM is the costliest
# part of a wake-up. Runs of the same build that differ by a third in throughput mostly differ
# there (BENCHMARKS.md, issue 14, round 10).
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
  cargo build --profile production -p passthru -j 2 >&2
  bin=${CARGO_TARGET_DIR:-target}/production/passthru
fi
# /metrics, read below, wants the operator's token.
export PASSTHRU_OPERATOR_TOKEN=${PASSTHRU_OPERATOR_TOKEN:-bench-operator-token}
database_args=()
if [ -n "${DATABASE:-}" ]; then
  database_args=(--database "$DATABASE")
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

# The server's CPU time in clock ticks: the process's in all (`all`, which keeps the time of
# threads that have ended), then each live thread's, summed by thread name.
cpu_ticks() {
  # In `stat`, the fields after the name's closing parenthesis: utime and stime are the 12th and
  # 13th of them.
  echo "all $(sed 's/^.*) //' "/proc/$server/stat" | awk '{print $12 + $13}')"
  for task in /proc/"$server"/task/*; do
    echo "$(tr ' ' '_' < "$task/comm") $(sed 's/^.*) //' "$task/stat" 2>/dev/null | awk '{print $12 + $13}')"
  done | awk 'NF == 2 {sum[$1] += $2} END {for (name in sum) print name, sum[name]}'
}

# Reschedule and function-call interrupts so far, summed over every CPU; empty where the kernel
# does not list them.
ipis() {
  awk '$1 == "RES:" || $1 == "CAL:" { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) sum += $i; seen = 1 }
       END { if (seen) print sum }' /proc/interrupts 2>/dev/null || true
}

out=$(mktemp)
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; rm -rf "$data" "$out"' EXIT
before=$(cpu_ticks)
ipis_before=$(ipis)
if [ -n "$rate" ]; then
  echo "== $(nproc) cores, $(uname -r), records $records, oha -c$connections -q$rate -z${duration}s, GET /passthru/demo/$flow (sample gather-single-key, digits 1)"
  oha --no-tui --latency-correction -c "$connections" -q "$rate" -z "${duration}s" "$url" | tee "$out"
  answered=$(awk '$1 == "[200]" {print $2}' "$out")
else
  echo "== $(nproc) cores, $(uname -r), records $records, wrk -t2 -c$connections -d${duration}s, GET /passthru/demo/$flow (sample gather-single-key, digits 1)"
  wrk -t2 -c"$connections" -d"${duration}s" --latency "$url" | tee "$out"
  # wrk counts every response; a non-2xx one is reported on a line of its own.
  answered=$(awk '/requests in/ {n = $1} /Non-2xx or 3xx responses/ {bad = $NF} END {print n - bad}' "$out")
fi
after=$(cpu_ticks)
ipis_after=$(ipis)
printf '%s\n%s\n' "$before" "$after" | awk -v n="${answered:-0}" -v hz="$(getconf CLK_TCK)" '
  { if (seen[$1]++) delta[$1] = $2 - first[$1]; else first[$1] = $2 }
  END {
    if (n <= 0) { print "== no request answered 200: no CPU per request"; exit }
    us = 1e6 / hz / n
    printf "== server CPU per request answered 200 (%d of them): %.1f µs", n, delta["all"] * us
    named = 0
    split("tokio-rt-worker passthru-record passthru-epoch", names, " ")
    for (i = 1; i <= 3; i++) {
      printf "; %s %.1f µs", names[i], delta[names[i]] * us
      named += delta[names[i]]
    }
    printf "; the rest %.1f µs\n", (delta["all"] - named) * us
  }'
if [ -n "$ipis_before" ] && [ -n "$ipis_after" ] && [ "${answered:-0}" -gt 0 ]; then
  awk -v a="$ipis_before" -v b="$ipis_after" -v n="$answered" \
    'BEGIN { printf "== reschedule and function-call interrupts (all CPUs) per request: %.3f\n", (b - a) / n }'
fi
if [ "$flow" != ivr ]; then
  # Let the workers finish the backlog, so the start delays cover every request.
  for _ in $(seq 1 600); do
    depth=$(curl -fsS -H "authorization: Bearer $PASSTHRU_OPERATOR_TOKEN" "http://127.0.0.1:$port/metrics" | awk '/^passthru_async_queue_depth /{print $2}')
    [ "$depth" = 0 ] && break
    sleep 0.1
  done
  curl -fsS -H "authorization: Bearer $PASSTHRU_OPERATOR_TOKEN" "http://127.0.0.1:$port/metrics" | grep -E '^passthru_async_'
fi
curl -fsS -H "authorization: Bearer $PASSTHRU_OPERATOR_TOKEN" "http://127.0.0.1:$port/metrics" | grep -E '^passthru_records_(written|dropped)_total'

