#!/usr/bin/env bash
# Build the pinned livekit-server, kustomize and kubeconform from their Go modules into the git-ignored .tools/bin,
# once per machine (a version stamp skips the build), livekit-sip from the wrapper module in deploy/dev/livekit-sip
# (the Go proxy serves v1.8.0 but not the module's version list, which `go install` reads), and install iproute2 from Debian when missing (the real-room
# tests make network namespaces). With arguments, only the tools named (`tools.sh kustomize kubeconform`).
set -euo pipefail

LIVEKIT_SERVER_VERSION=v1.13.5
KUSTOMIZE_VERSION=v5.8.2   # v5.8.3 needs Go 1.27
KUBECONFORM_VERSION=v0.8.0
LIVEKIT_SIP_VERSION=v1.8.0   # as deploy/dev/livekit-sip/go.mod requires it
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/.tools/bin"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
WANTED=("$@")
[ ${#WANTED[@]} -gt 0 ] || WANTED=(livekit-server kustomize kubeconform livekit-sip)

wanted() { [[ " ${WANTED[*]} " == *" $1 "* ]]; }

# build NAME VERSION PACKAGE [BUILT]: go install PACKAGE@VERSION, whose binary `go install` names BUILT (default
# NAME), as .tools/bin/NAME, unless its stamp says it is there.
build() {
  local name=$1 version=$2 package=$3 built="$BIN/${4:-$1}" stamp="$BIN/$1.version"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
    return 0
  fi
  if [ ! -x "$GO" ]; then
    echo "tools: Go is needed to build $name $version (set GO=/path/to/go)" >&2
    exit 1
  fi
  echo "tools: building $name $version into $BIN (once per machine)"
  mkdir -p "$BIN"
  local start=$SECONDS
  # Pure Go, as their own release binaries.
  GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" install "$package@$version"
  [ "$built" = "$BIN/$name" ] || mv -f "$built" "$BIN/$name"
  echo "$version" >"$stamp"
  echo "tools: $name $version built in $((SECONDS - start)) s"
}

if wanted livekit-server; then
  if ! command -v ip >/dev/null 2>&1; then
    echo "tools: installing iproute2 with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iproute2 >/dev/null
  fi
  # The module's main package is cmd/server, so `go install` names the binary `server`.
  build livekit-server "$LIVEKIT_SERVER_VERSION" github.com/livekit/livekit-server/cmd/server server
fi
if wanted kustomize; then
  build kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5
fi
if wanted kubeconform; then
  build kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform
fi
if wanted livekit-sip; then
  if [ -x "$BIN/livekit-sip" ] && [ "$(cat "$BIN/livekit-sip.version" 2>/dev/null)" = "$LIVEKIT_SIP_VERSION" ]; then
    :
  elif [ ! -x "$GO" ]; then
    echo "tools: Go is needed to build livekit-sip $LIVEKIT_SIP_VERSION (set GO=/path/to/go)" >&2
    exit 1
  else
    echo "tools: building livekit-sip $LIVEKIT_SIP_VERSION into $BIN (once per machine)"
    mkdir -p "$BIN"
    start=$SECONDS
    # cgo (Opus, SoX resampler: deploy/dev/system.sh); built in a copy of the wrapper, which -mod=mod may rewrite.
    wrap="$(mktemp -d)"
    trap 'rm -rf "$wrap"' EXIT
    cp "$ROOT/deploy/dev/livekit-sip/go.mod" "$ROOT/deploy/dev/livekit-sip/go.sum" "$wrap/"
    (cd "$wrap" && GOFLAGS=-mod=mod "$GO" build -o "$BIN/livekit-sip" github.com/livekit/sip/cmd/livekit-sip)
    echo "$LIVEKIT_SIP_VERSION" >"$BIN/livekit-sip.version"
    echo "tools: livekit-sip $LIVEKIT_SIP_VERSION built in $((SECONDS - start)) s"
  fi
fi
