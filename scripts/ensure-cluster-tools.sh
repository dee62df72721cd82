#!/usr/bin/env bash
# SPARKGATE_CLUSTER=standalone (and its test) fences the cluster with network namespaces: it needs `ip`
# (iproute2) and `nsenter` (util-linux). Install them from the distribution when missing.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
if have ip && have nsenter; then
  exit 0
fi
echo "sparkgate: installing iproute2 and util-linux (ip, nsenter) for the local Spark cluster" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iproute2 util-linux >/dev/null
elif command -v dnf >/dev/null 2>&1; then
  $SUDO dnf install -y iproute util-linux
else
  echo "sparkgate: no known package manager; install iproute2 (ip) and util-linux (nsenter) for SPARKGATE_CLUSTER" >&2
  exit 1
fi
