#!/usr/bin/env bash
# Install the Debian packages SAFEGEN uses when they are missing and apt can be used: real scans,
# Chromium for the browser tests, PostgreSQL for the database tests (a throw-away cluster per run).
# Never fails the build: whatever cannot be installed is reported, and the tests that need it
# skip with a printed reason.
set -u
packages=(mricron-data insighttoolkit5-examples invesalius-examples chromium postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: apt-get not found; not installed: ${missing[*]} (browser tests and Colin27/ITK data will be skipped)"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "system-deps: not root and no sudo; not installed: ${missing[*]} (tests needing them will be skipped)"
    exit 0
  fi
fi
echo "system-deps: installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/tmp/safegen-apt.log 2>&1; then
  echo "system-deps: apt-get failed (see /tmp/safegen-apt.log); continuing without ${missing[*]}"
fi
exit 0
