#!/usr/bin/env bash
# Installs the Debian packages the C plugins are built with, pinned, when they are missing.
# Called by `make -C plugins` (and so by the tests and CI); does nothing when all are present.
set -euo pipefail

PINS=(
  "clang-14=1:14.0.6-12"
  "lld-14=1:14.0.6-12"
  "libclang-rt-14-dev-wasm32=1:14.0.6-12"
  "wasi-libc=0.0~git20220510.9886d3d-2"
)

missing=()
for pin in "${PINS[@]}"; do
  [[ "$(dpkg-query -W -f='${Version}' "${pin%%=*}" 2>/dev/null)" == "${pin#*=}" ]] || missing+=("$pin")
done
((${#missing[@]})) || exit 0

if ! command -v apt-get >/dev/null; then
  echo "missing packages (${missing[*]}) and no apt-get: install clang 14, wasm-ld and wasi-libc," \
    "or set CLANG to a clang that targets wasm32-wasi" >&2
  exit 1
fi
sudo=()
[[ "$(id -u)" == 0 ]] || sudo=(sudo)
echo "installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
