#!/usr/bin/env bash
# Installs Debian's PostgreSQL server package when no `initdb` can be found: the tests start a
# throwaway server from it (tests/common/pg.rs) unless PASSTHRU_TEST_DATABASE_URL names one.
# Called by the tests themselves and by CI; does nothing when a server is installed.
set -euo pipefail

if command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "PostgreSQL is not installed and there is no apt-get: install a PostgreSQL server" \
    "(initdb on PATH), or set PASSTHRU_TEST_DATABASE_URL to a server the tests may use" >&2
  exit 1
fi
sudo=()
[[ "$(id -u)" == 0 ]] || sudo=(sudo)
echo "installing postgresql (Debian's package)" >&2
"${sudo[@]}" apt-get update -qq
# The package creates a cluster of its own (`main`); the tests never use it.
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql
