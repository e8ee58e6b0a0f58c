#!/usr/bin/env bash
# Builds passthru with profile-guided optimisation (PGO): the `production` profile, with the
# compiler told which branches and functions the request path takes.
#
#   bash scripts/build-pgo.sh          prints the binary's path when done
#
# Three steps, taking about 25 minutes on 2 cores (a production build alone takes 15 to 22):
#   1. an instrumented `release` build (it counts what runs),
#   2. the training: that build serves the embedded demo plugins on loopback while curl sends it
#      the Exotel samples in `tests/fixtures/exotel/` (sync, with and without config and log
#      lines, and async), then stops; the counts are merged with `llvm-profdata`,
#   3. the `production` build, optimised with those counts.
# Everything goes under `target/pgo/` (or `$CARGO_TARGET_DIR/pgo/`). Needs curl, and rustup's
# `llvm-tools` component (added here when missing: `llvm-profdata` must match rustc's LLVM).
# The binary behaves as the `production` one does; only its speed differs (BENCHMARKS.md,
# issue 14, round 17). What the training does not run (the admin API, compiles) is optimised
# as seldom taken, which may make it a little slower.
set -euo pipefail
cd "$(dirname "$0")/.."

target=$(realpath -m "${CARGO_TARGET_DIR:-target}")/pgo
triple=$(rustc -vV | awk '/^host:/ {print $2}')
profdata="$(rustc --print sysroot)/lib/rustlib/$triple/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  rustup component add llvm-tools >&2
fi
[ -x "$profdata" ] || { echo "llvm-profdata not found at $profdata" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed for the training" >&2; exit 1; }

raw="$target/raw"
rm -rf "$raw"
mkdir -p "$raw"

echo "== 1/3: instrumented build ($target/generate)" >&2
# `--target` keeps the flags off build scripts and procedural macros; the plugins' own build
# (host/build.rs) clears them too.
RUSTFLAGS="-Cprofile-generate=$raw" cargo build --release --locked -j 2 -p passthru \
  --target "$triple" --target-dir "$target/generate" >&2
instrumented="$target/generate/$triple/release/passthru"

echo "== 2/3: training" >&2
data=$(mktemp -d)
server=
stop() {
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
  fi
}
trap 'stop; rm -rf "$data"' EXIT
cat > "$data/passthru.toml" <<'EOF'
[[flow]]
tenant = "demo"
name = "ivr"
plugin = "builtin:ivr-menu"

[[flow]]
tenant = "demo"
name = "vip"
plugin = "builtin:vip-caller"
config = { vip_numbers = "09999999999" }

[[flow]]
tenant = "demo"
name = "log"
plugin = "builtin:call-logger"
mode = "async"
EOF
port=${PORT:-18090}
export PASSTHRU_OPERATOR_TOKEN=pgo-training-token
"$instrumented" serve --config "$data/passthru.toml" --data-dir "$data" \
  --listen "127.0.0.1:$port" 2>"$data/server.log" &
server=$!
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || {
  cat "$data/server.log" >&2
  echo "the instrumented server did not start" >&2
  exit 1
}

base="http://127.0.0.1:$port/passthru/demo"
requests=0
for sample in tests/fixtures/exotel/*.query; do
  query=$(tr -d '\n' < "$sample")
  # Each flow gets the sample as Exotel sends it, and with each menu key, in the proportions of
  # a server that mostly decides: 2,000 times to ivr-menu, 1,000 to vip-caller (config and a log
  # line), 200 to the async call-logger. curl numbers the requests (`n`, a parameter no plugin
  # reads) so that each is sent, 10 at a time.
  for flow in ivr:2000 vip:1000 log:200; do
    for digits in '%221%22' '%222%22' ''; do
      url="$base/${flow%:*}?${query}${digits:+&digits=$digits}&n=[1-${flow#*:}]"
      codes=$(curl -sS --no-progress-meter -Z --parallel-max 10 -o /dev/null \
        -w '%{http_code}\n' "$url")
      bad=$(grep -cvxE '200|302' <<<"$codes" || true)
      [ "$bad" = 0 ] || {
        echo "training: $bad requests to ${flow%:*} answered neither 200 nor 302" >&2
        exit 1
      }
      requests=$((requests + ${flow#*:}))
    done
  done
done
# The metrics and health endpoints, which monitoring reads all day.
for _ in $(seq 1 50); do
  curl -fsS -o /dev/null -H "authorization: Bearer $PASSTHRU_OPERATOR_TOKEN" \
    "http://127.0.0.1:$port/metrics"
done
stop
echo "   $requests requests sent" >&2
shopt -s nullglob
profiles=("$raw"/*.profraw)
[ ${#profiles[@]} -gt 0 ] || { echo "the training wrote no profile to $raw" >&2; exit 1; }
"$profdata" merge -o "$target/passthru.profdata" "${profiles[@]}"

echo "== 3/3: optimised build ($target/use)" >&2
RUSTFLAGS="-Cprofile-use=$target/passthru.profdata" cargo build --profile production --locked \
  -j 2 -p passthru --target "$triple" --target-dir "$target/use" >&2
echo "$target/use/$triple/production/passthru"
