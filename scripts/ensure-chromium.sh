#!/usr/bin/env bash
# The console's browser tests (tests/console) drive a real headless Chromium with Playwright: install
# the distribution's `chromium` when it is not there (Playwright is told to use /usr/bin/chromium, so
# no browser download of its own is needed).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && chromium --version >/dev/null 2>&1; then
  exit 0
fi
echo "sparkgate: installing Chromium for the console tests" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
elif command -v dnf >/dev/null 2>&1; then
  $SUDO dnf install -y chromium
else
  echo "sparkgate: no known package manager; install Chromium (/usr/bin/chromium) and retry" >&2
  exit 1
fi
chromium --version
