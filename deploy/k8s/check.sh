#!/usr/bin/env bash
# Render the base and every overlay with kustomize and validate each object with kubeconform against the schemas
# in deploy/k8s/schemas only (Kubernetes' strict schemas and KEDA's CRDs): an unknown field, a wrong type or a kind
# without a schema fails. `make deploy-check` runs it after deploy/dev/tools.sh has built the two tools.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/.tools/bin"
SCHEMAS="$ROOT/deploy/k8s/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json"
validate() { "$BIN/kubeconform" -strict -summary -output text -schema-location "$SCHEMAS" "$@"; }

# The check must be able to fail: a kind with no schema here is an error, never skipped.
canary='{"apiVersion": "example.com/v1", "kind": "Unlisted", "metadata": {"name": "x"}}'
if validate - <<<"$canary" >/dev/null 2>&1; then
  echo "deploy-check: kubeconform accepted a kind without a schema; it must refuse it" >&2
  exit 1
fi

status=0
for dir in "$ROOT/deploy/k8s/base" "$ROOT"/deploy/k8s/overlays/*/; do
  name="${dir#"$ROOT"/}"
  echo "deploy-check: ${name%/}"
  "$BIN/kustomize" build "$dir" | validate - || status=1
done
exit "$status"
