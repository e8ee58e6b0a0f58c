#!/usr/bin/env bash
# Runs each cargo fuzz target for a while on stable Rust (libFuzzer without a sanitizer), one
# after the other at one job each, starting from the checked-in seeds. See docs/fuzzing.md.
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]     default: 600 s each, every target
#
# The corpus grows in fuzz/corpus/TARGET (ignored by git); a crash is written to
# fuzz/artifacts/TARGET/ and stops that target's run. FUZZ_TARGET_DIR moves the build (it is large).
# Built with 16 codegen units (cargo fuzz defaults to 1, which makes wasmtime take far longer to
# build on two cores); `cargo fuzz build` needs the same flags, or it builds everything again.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(query upload admin_json)
target_dir=(${FUZZ_TARGET_DIR:+--target-dir "$FUZZ_TARGET_DIR"})

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  extra=()
  [ -f "dicts/$target.dict" ] && extra+=("-dict=dicts/$target.dict")
  echo "==> $target for ${seconds}s"
  cargo fuzz run --sanitizer none --codegen-units 16 "${target_dir[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}" 2>&1 |
    grep -E '^(#[0-9]+ +(DONE|INITED)|stat::|==[0-9]+==|SUMMARY|Test unit written|Done )' || true
  if compgen -G "artifacts/$target/crash-*" >/dev/null; then
    echo "!! $target: crash inputs in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
