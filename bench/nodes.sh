#!/usr/bin/env bash
# Three release nodes on one PostgreSQL database, on loopback ports: how long a change made
# through one node takes to be live on the other two. Prints one line per change: what, and the
# milliseconds from the API's answer to both other nodes answering with the new version.
#
#   DATABASE=postgres://... bash bench/nodes.sh [ROUNDS]     DATABASE: an empty database
#   BIN=/path/to/passthru ...                                 a binary built elsewhere
#   PLUGINS=DIR ...                                           where ivr_menu.wasm and
#                                                             vip_caller.wasm are (default: the
#                                                             build script's output)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
: "${DATABASE:?set DATABASE to an empty PostgreSQL database}"
plugins=${PLUGINS:-${CARGO_TARGET_DIR:-target}/plugins/wasm32-unknown-unknown/release}
bin=${BIN:-}
if [ -z "$bin" ]; then
  cargo build --profile production -p passthru -j 2 >&2
  bin=${CARGO_TARGET_DIR:-target}/production/passthru
fi
export PASSTHRU_OPERATOR_TOKEN=bench-operator-token
dirs=() pids=() ports=(18181 18182 18183)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for dir in "${dirs[@]}"; do rm -rf "$dir"; done
}
trap cleanup EXIT
for port in "${ports[@]}"; do
  dir=$(mktemp -d)
  dirs+=("$dir")
  : > "$dir/passthru.toml"
  "$bin" serve --config "$dir/passthru.toml" --data-dir "$dir/data" --database "$DATABASE" \
    --listen "127.0.0.1:$port" 2>"$dir/log" &
  pids+=($!)
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

node() { echo "http://127.0.0.1:${ports[$1]}"; }
op=(-H "authorization: Bearer $PASSTHRU_OPERATOR_TOKEN")
curl -fsS "${op[@]}" -H 'content-type: application/json' -d '{"name":"acme"}' "$(node 0)/v1/tenants" >/dev/null
token=$(curl -fsS "${op[@]}" -X POST "$(node 0)/v1/tenants/acme/tokens" | sed 's/.*"token":"\([^"]*\)".*/\1/')
auth=(-H "authorization: Bearer $token")
for plugin in ivr_menu vip_caller; do
  curl -fsS "${auth[@]}" -H 'content-type: application/wasm' --data-binary "@$plugins/$plugin.wasm" \
    "$(node 0)/v1/plugins/menu/versions" >/dev/null
done

# Nodes 2 and 3 compile each upload when it is announced: give them a moment (a version is
# rarely bound the instant it is uploaded). SETTLE=0 binds at once, compiling on the way.
sleep "${SETTLE:-2}"

call="/passthru/acme/ivr?CallSid=b1&CallFrom=09800000009&digits=%221%22"
status() { curl -s -o /dev/null -w '%{http_code}' "$(node "$1")$call"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# Waits until nodes $2 and $3 answer $1; prints the milliseconds since $4.
live() {
  local want=$1 a=$2 b=$3 since=$4
  until [ "$(status "$a")" = "$want" ] && [ "$(status "$b")" = "$want" ]; do :; done
  echo $(( $(now_ms) - since ))
}

curl -fsS "${auth[@]}" -X PUT -H 'content-type: application/json' \
  -d '{"plugin":"menu","version":1,"config":{"vip_numbers":"09800000001"}}' "$(node 0)/v1/flows/ivr" >/dev/null
start=$(now_ms)
echo "bind v1 through node 1: $(live 200 1 2 "$start") ms"
for round in $(seq 1 "$rounds"); do
  curl -fsS "${auth[@]}" -H 'content-type: application/json' -d '{"version":2}' \
    "$(node 0)/v1/flows/ivr/activate" >/dev/null
  start=$(now_ms)
  echo "round $round: activate v2 through node 1: $(live 302 1 2 "$start") ms"
  curl -fsS "${auth[@]}" -X POST "$(node 2)/v1/flows/ivr/rollback" >/dev/null
  start=$(now_ms)
  echo "round $round: roll back through node 3: $(live 200 0 1 "$start") ms"
done
