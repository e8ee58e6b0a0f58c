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
# The builds go under `target/pgo/` (or `$CARGO_TARGET_DIR/pgo/`; the guest plugins are built
# into `target/plugins` as in every build). Needs curl, and rustup's `llvm-tools` component
# (added here when missing: `llvm-profdata` must match rustc's LLVM). The binary behaves as the
# `production` one does; only its speed differs (BENCHMARKS.md, issue 14, round 17). What the
# training does not run (the admin API, most error paths) is laid out as seldom taken, which may
# make it a little slower.
#
#   PASSTHRU_PGO_PORT=18090    the loopback port the training listens on
set -euo pipefail
cd "$(dirname "$0")/.."

target=$(realpath -m "${CARGO_TARGET_DIR:-target}")/pgo
triple=$(rustc -vV | awk '/^host:/ {print $2}')
profdata="$(rustc --print sysroot)/lib/rustlib/$triple/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  rustup component add llvm-tools >&2 || true
fi
[ -x "$profdata" ] || { echo "llvm-profdata not found at $profdata" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed for the training" >&2; exit 1; }

raw="$target/raw"
rm -rf "$raw"
mkdir -p "$raw"

echo "== 1/3: instrumented build ($target/generate)" >&2
# `--target` keeps the flag off build scripts and procedural macros; the plugins' own build
# (host/build.rs) clears it too. The encoded form keeps a path with spaces in one argument.
CARGO_ENCODED_RUSTFLAGS="-Cprofile-generate=$raw" cargo build --release --locked -j 2 -p passthru \
  --target "$triple" --target-dir "$target/generate" >&2
instrumented="$target/generate/$triple/release/passthru"

echo "== 2/3: training" >&2
data=$(mktemp -d)
server=
# Stops the server; fails unless it exits cleanly, since only then has it written its counts.
stop() {
  local status=0
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" || status=$?
    server=
  fi
  return "$status"
}
failed() {
  echo "training: $*; the server's last lines:" >&2
  tail -n 20 "$data/server.log" >&2
  exit 1
}
trap 'stop || true; rm -rf "$data"' EXIT
cat > "$data/passthru.toml" <<'EOF'
[[flow]]
tenant = "demo"
name = "ivr"
plugin = "builtin:ivr-menu"

[[flow]]
tenant = "demo"
name = "vip"
plugin = "builtin:vip-caller"
config = { vip_numbers = "09800000001,09800000007" }

[[flow]]
tenant = "demo"
name = "log"
plugin = "builtin:call-logger"
mode = "async"
EOF
port=${PASSTHRU_PGO_PORT:-18090}
export PASSTHRU_OPERATOR_TOKEN=pgo-training-token
"$instrumented" serve --config "$data/passthru.toml" --data-dir "$data" \
  --listen "127.0.0.1:$port" 2>"$data/server.log" &
server=$!
for _ in $(seq 1 600); do
  kill -0 "$server" 2>/dev/null || failed "the instrumented server exited (is port $port taken?)"
  curl -fsS -m 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS -m 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 ||
  failed "the instrumented server did not answer on port $port within 60 s"

base="http://127.0.0.1:$port/passthru/demo"
requests=0
for sample in tests/fixtures/exotel/*.query; do
  query=$(tr -d '\n' < "$sample")
  # Each flow gets the sample as Exotel sends it, and with each menu key, in the proportions of
  # a server that mostly decides: 2,000 times to ivr-menu, 1,000 to vip-caller (config and a log
  # line), 200 to the async call-logger, 10 at a time. The URLs go to curl in a config file,
  # unglobbed, each numbered (`n`, a parameter no plugin reads) so that each is sent.
  for flow in ivr:2000 vip:1000 log:200; do
    for digits in '%221%22' '%222%22' ''; do
      url="$base/${flow%:*}?${query}${digits:+&digits=$digits}"
      for n in $(seq 1 "${flow#*:}"); do
        printf 'url = "%s&n=%d"\noutput = "/dev/null"\n' "$url" "$n"
      done > "$data/urls"
      codes=$(curl -sS --no-progress-meter -m 10 -g -Z --parallel-max 10 -w '%{http_code}\n' \
        -K "$data/urls") || true
      bad=$(grep -cvxE '200|302' <<<"$codes" || true)
      [ "$bad" = 0 ] || failed "$bad requests to ${flow%:*} answered neither 200 nor 302"
      requests=$((requests + ${flow#*:}))
    done
  done
done
# The metrics, which monitoring reads all day; then a check that every sync request was decided
# by its plugin (a fallback answer is a 302 too) and every async one queued.
for _ in $(seq 1 50); do
  metrics=$(curl -fsS -m 10 -H "authorization: Bearer $PASSTHRU_OPERATOR_TOKEN" \
    "http://127.0.0.1:$port/metrics") || failed "/metrics did not answer"
done
fallbacks=$(awk '/^passthru_decisions_total\{/ && !/outcome="(decided|queued)"/ {n += $NF} END {print n + 0}' <<<"$metrics")
[ "$fallbacks" = 0 ] || failed "$fallbacks requests were answered by the fallback, not the plugin"
stop || failed "the instrumented server did not exit cleanly"
echo "   $requests requests sent" >&2
shopt -s nullglob
profiles=("$raw"/*.profraw)
[ ${#profiles[@]} -gt 0 ] || { echo "the training wrote no profile to $raw" >&2; exit 1; }
"$profdata" merge -o "$target/passthru.profdata" "${profiles[@]}"

echo "== 3/3: optimised build ($target/use)" >&2
CARGO_ENCODED_RUSTFLAGS="-Cprofile-use=$target/passthru.profdata" cargo build --profile production --locked \
  -j 2 -p passthru --target "$triple" --target-dir "$target/use" >&2
echo "$target/use/$triple/production/passthru"
