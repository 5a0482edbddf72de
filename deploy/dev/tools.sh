#!/usr/bin/env bash
# Build the pinned livekit-server from its Go module into the git-ignored .tools/bin, once per machine (a version
# stamp skips the build), and install iproute2 from Debian when missing (the real-room tests make network namespaces).
set -euo pipefail

LIVEKIT_SERVER_VERSION=v1.13.5
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/.tools/bin"
STAMP="$BIN/livekit-server.version"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

if ! command -v ip >/dev/null 2>&1; then
  echo "tools: installing iproute2 with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iproute2 >/dev/null
fi

if [ -x "$BIN/livekit-server" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$LIVEKIT_SERVER_VERSION" ]; then
  exit 0
fi
if [ ! -x "$GO" ]; then
  echo "tools: Go is needed to build livekit-server $LIVEKIT_SERVER_VERSION (set GO=/path/to/go)" >&2
  exit 1
fi
echo "tools: building livekit-server $LIVEKIT_SERVER_VERSION into $BIN (a few minutes, once per machine)"
mkdir -p "$BIN"
# The module's main package is cmd/server, so `go install` names the binary `server`; pure Go, as its own image.
start=$SECONDS
GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_SERVER_VERSION"
mv -f "$BIN/server" "$BIN/livekit-server"
echo "$LIVEKIT_SERVER_VERSION" >"$STAMP"
echo "tools: livekit-server $LIVEKIT_SERVER_VERSION built in $((SECONDS - start)) s"
