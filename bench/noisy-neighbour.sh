#!/usr/bin/env bash
# Noisy neighbour on loopback: does one tenant flooding its flow slow or starve another?
#
# The release server with two tenants: `quiet` (builtin ivr-menu) and `noisy` (the hostile test
# fixture, whose mode is picked per flow: `sleep` holds its pool slot to the deadline at no CPU
# cost, `loop` spins to its deadline, `memory` allocates to its cap). Three phases of DURATION_S
# each, in one run:
#   1. quiet alone: wrk -c8 against quiet;
#   2. the same while a second wrk floods noisy/sleep at FLOOD connections (deadline 1 s);
#   3. the same while it floods noisy/loop (each call spins for its 20 ms deadline).
# For each phase: quiet's requests/s and latency percentiles (wrk), and how many of quiet's calls
# answered anything but `decided` (the server's own counters), which must be 0.
#
#   bash bench/noisy-neighbour.sh [DURATION_S] [FLOOD]
#   BIN=/path/to/passthru bash bench/noisy-neighbour.sh   a binary built elsewhere
#   HOSTILE=/path/to/hostile.wasm ...                     the fixture, if not under target/plugins
#
# Needs wrk (Debian: apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10}
flood=${2:-400}
port=${PORT:-18090}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

bin=${BIN:-}
target=${CARGO_TARGET_DIR:-target}
if [ -z "$bin" ]; then
  cargo build --profile production -p passthru -j 2 >&2
  bin=$target/production/passthru
fi
hostile=${HOSTILE:-$(ls -t "$target"/plugins/wasm32-wasip2/release/hostile.wasm target/plugins/wasm32-wasip2/release/hostile.wasm 2>/dev/null | head -1)}
[ -n "$hostile" ] || { echo "no hostile.wasm under $target/plugins (build the tests first)" >&2; exit 1; }
hostile=$(realpath "$hostile")   # the config file lives elsewhere

data=$(mktemp -d)
config="$data/passthru.toml"
{
  printf '[[flow]]\ntenant = "quiet"\nname = "ivr"\nplugin = "builtin:ivr-menu"\n'
  for mode in sleep loop; do
    deadline=20
    [ "$mode" = sleep ] && deadline=1000
    printf '[[flow]]\ntenant = "noisy"\nname = "%s"\nplugin = "%s"\nfallback = "failure"\n' "$mode" "$hostile"
    printf '[flow.limits]\ndeadline_ms = %s\nfuel = 1000000000000\n[flow.config]\nmode = "%s"\n' "$deadline" "$mode"
  done
} > "$config"

# /metrics, read below, wants the operator's token.
export PASSTHRU_OPERATOR_TOKEN=${PASSTHRU_OPERATOR_TOKEN:-bench-operator-token}
"$bin" serve --config "$config" --data-dir "$data" --listen "127.0.0.1:$port" \
  2>/tmp/passthru-noisy.log &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

query=$(tr -d '\n' < tests/fixtures/exotel/gather-single-key.query)
quiet="http://127.0.0.1:$port/passthru/quiet/ivr?${query}&digits=%221%22"

# quiet's calls that did not answer `decided`, so far.
undecided() {
  curl -fsS -H "authorization: Bearer $PASSTHRU_OPERATOR_TOKEN" "http://127.0.0.1:$port/metrics" |
    awk '/^passthru_decisions_total\{/ && /tenant="quiet"/ && !/outcome="decided"/ {n += $2} END {print n + 0}'
}

phase() {
  local name=$1 noisy_mode=$2 before after
  before=$(undecided)
  echo "== $name: wrk -t1 -c8 -d${duration}s quiet/ivr${noisy_mode:+, while wrk -t1 -c$flood floods noisy/$noisy_mode}"
  local flooder=""
  if [ -n "$noisy_mode" ]; then
    wrk -t1 -c"$flood" -d"$((duration + 2))s" "http://127.0.0.1:$port/passthru/noisy/$noisy_mode?CallSid=flood" \
      >/tmp/passthru-noisy-flood.txt 2>&1 &
    flooder=$!
    sleep 1
  fi
  wrk -t1 -c8 -d"${duration}s" --latency "$quiet" | grep -E 'Requests/sec|^ +(50|90|99)%|Latency  '
  [ -n "$flooder" ] && { wait "$flooder" || true; grep -E 'Requests/sec' /tmp/passthru-noisy-flood.txt | sed 's/^/   noisy: /'; }
  after=$(undecided)
  echo "   quiet calls not decided: $((after - before))"
}

echo "== $(nproc) cores, $(uname -r), max_concurrent_calls 256, max_calls_per_tenant 64 (defaults)"
phase "quiet alone" ""
phase "quiet, noisy sleeping" sleep
phase "quiet, noisy spinning" loop
curl -fsS -H "authorization: Bearer $PASSTHRU_OPERATOR_TOKEN" "http://127.0.0.1:$port/metrics" | grep -E '^passthru_decisions_total\{.*tenant="noisy"' || true
