#!/usr/bin/env bash
# HTTP load on loopback for a sync flow whose plugin makes one outbound request per decision:
# the release server, the `outbound-probe` fixture (GET to an upstream on loopback), and an
# upstream (Python asyncio) that answers each request after 1 ms. wrk at CONNECTIONS connections.
#
#   bash bench/outbound-load.sh [DURATION_S] [CONNECTIONS]
#   BIN=/path/to/passthru bash bench/outbound-load.sh   a binary built elsewhere
#
# Needs wrk (Debian: apt-get install wrk) and python3. Everything shares the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-15}
connections=${2:-10}
port=${PORT:-18080}
upstream_port=${UPSTREAM_PORT:-18081}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

bin=${BIN:-}
if [ -z "$bin" ]; then
  cargo build --profile production -p passthru -j 2 >&2
  bin=${CARGO_TARGET_DIR:-target}/production/passthru
fi
plugin=$(ls -t ${CARGO_TARGET_DIR:-target}/plugins/wasm32-wasip2/release/outbound_probe.wasm \
  target/plugins/wasm32-wasip2/release/outbound_probe.wasm 2>/dev/null | head -1 || true)
[ -n "$plugin" ] || { echo "outbound_probe.wasm not built (make -C plugins rust)" >&2; exit 1; }
plugin=$(realpath "$plugin")

data=$(mktemp -d)
config="$data/passthru.toml"
cat > "$config" <<TOML
[outbound]
allow_ranges = ["127.0.0.0/8"]

[[flow]]
tenant = "demo"
name = "out"
plugin = "$plugin"
outbound_hosts = ["http://127.0.0.1:$upstream_port"]
[flow.config]
url = "http://127.0.0.1:$upstream_port/crm"
TOML

python3 - "$upstream_port" <<'PY' &
import asyncio, sys
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.001)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
    except Exception:
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
upstream=$!

# /metrics, read below, wants the operator's token.
export PASSTHRU_OPERATOR_TOKEN=${PASSTHRU_OPERATOR_TOKEN:-bench-operator-token}
"$bin" serve --config "$config" --data-dir "$data" --listen "127.0.0.1:$port" \
  2>/tmp/passthru-outbound-load.log &
server=$!
trap 'kill "$server" "$upstream" 2>/dev/null; wait "$server" "$upstream" 2>/dev/null || true; rm -rf "$data"' EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

url="http://127.0.0.1:$port/passthru/demo/out?CallSid=bench&CallFrom=09800000001"
branch=$(curl -s -D - -o /dev/null "$url" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-passthru-branch"{print $2}')
[ "$branch" = success ] || { echo "expected the success branch (a 200 from upstream), got '$branch'" >&2; exit 1; }

wrk -t2 -c"$connections" -d"${duration}s" --latency "$url"
curl -s -H "authorization: Bearer $PASSTHRU_OPERATOR_TOKEN" "http://127.0.0.1:$port/metrics" | grep -E '^passthru_decisions_total.*outcome="(decided|deadline|overloaded|trap)"' || true
