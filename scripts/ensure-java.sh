#!/usr/bin/env bash
# Spark needs a Java 17+ runtime: install one from the distribution when none is present.
set -euo pipefail
version() { java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}'; }
if command -v java >/dev/null 2>&1 && [ "$(version)" -ge 17 ] 2>/dev/null; then
  exit 0
fi
echo "sparkgate: installing a Java 17 runtime for Spark" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null \
    || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq default-jre-headless >/dev/null
elif command -v dnf >/dev/null 2>&1; then
  $SUDO dnf install -y java-17-openjdk-headless
elif command -v brew >/dev/null 2>&1; then
  brew install openjdk@17
else
  echo "sparkgate: no known package manager; install Java 17+ and retry" >&2
  exit 1
fi
java -version
