#!/usr/bin/env bash
# Installs the Debian packages the test suites use: Xen 4.17's xenstore tools and libraries, the real C
# xenstored (differential tests, benchmarks), Xen's headers (binding layout tests) and gcc (the LD_PRELOAD shim
# and the layout probe). Idempotent: does nothing when everything is present. Needs root (or sudo) and apt.
set -euo pipefail
packages=(xenstore-utils libxenstore4 xen-utils-4.17 libxen-dev gcc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all present (${packages[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-deps: no apt-get; missing ${missing[*]}: the tests that need them will report themselves skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "install-deps: not root and no password-less sudo; missing ${missing[*]}: the tests that need them will report themselves skipped" >&2
    exit 0
  fi
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
