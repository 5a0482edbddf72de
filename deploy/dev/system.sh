#!/usr/bin/env bash
# Debian packages the tests need and pip cannot provide: flite (the permissive local TTS, used when the
# GPL piper extra is not installed), chromium (the console's browser tests) and prometheus for its promtool
# (checks and unit-tests deploy/prometheus's rules), and the Asterisk core prompts in English (one speaker's
# recorded prompts with their transcripts, CC-BY-SA-3.0: the speech-to-text eval), SIPp (sip-tester: the SIP load
# test places its calls with it), and the C libraries livekit-sip builds against (Opus, SoX's resampler,
# pkg-config: deploy/dev/tools.sh). Installed only when missing.
set -euo pipefail

missing=()
command -v flite >/dev/null 2>&1 || missing+=(flite)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
[ -f /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz ] || missing+=(asterisk-core-sounds-en)
[ -f /usr/share/asterisk/sounds/en_US_f_Allison/digits/5.wav ] || missing+=(asterisk-core-sounds-en-wav)
[ -f /usr/share/asterisk/sounds/en_US_f_Allison/digits/5.g722 ] || missing+=(asterisk-core-sounds-en-g722)
for pkg in libopus-dev libopusfile-dev libsoxr-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
