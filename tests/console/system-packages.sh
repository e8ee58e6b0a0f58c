#!/usr/bin/env bash
# Installs the headless browser the console's browser test drives (tests/console.rs): Debian's
# Chromium and its WebDriver, at least the minimum version below, when missing or older.
# Called by the test itself (and by .ci/run); does nothing when both are present and recent.
# Minimum versions, not pins: Debian's security updates replace Chromium often, and the pinned
# version would soon be gone from the archive.
set -euo pipefail

MINIMUMS=(
  "chromium=150"
  "chromium-driver=150"
)

missing=()
for minimum in "${MINIMUMS[@]}"; do
  package=${minimum%%=*}
  installed=$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null || true)
  if [[ -z "$installed" ]] || dpkg --compare-versions "$installed" lt "${minimum#*=}"; then
    missing+=("$package")
  fi
done
# chromedriver drives only the Chromium of its own version: both come from one source package.
if ((${#missing[@]} == 0)) &&
  [[ "$(dpkg-query -W -f='${Version}' chromium)" != "$(dpkg-query -W -f='${Version}' chromium-driver)" ]]; then
  missing=(chromium chromium-driver)
fi
((${#missing[@]})) || exit 0

if ! command -v apt-get >/dev/null; then
  echo "missing packages (${missing[*]}) and no apt-get: install Chromium and chromedriver" \
    "(at least version ${MINIMUMS[0]#*=}), or set PASSTHRU_CHROMEDRIVER and PASSTHRU_CHROMIUM" >&2
  exit 1
fi
sudo=()
[[ "$(id -u)" == 0 ]] || sudo=(sudo -n)
echo "installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
