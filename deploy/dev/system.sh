#!/usr/bin/env bash
# Debian packages the tests need and pip cannot provide: flite (the permissive local TTS, used when the
# GPL piper extra is not installed), chromium (the console's browser tests) and prometheus for its promtool
# (checks and unit-tests deploy/prometheus's rules). Installed only when missing.
set -euo pipefail

missing=()
command -v flite >/dev/null 2>&1 || missing+=(flite)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
