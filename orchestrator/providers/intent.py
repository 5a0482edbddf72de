"""The router's local intent classifier: MiniLM int8 on onnxruntime or hashed char n-grams, a linear head, a vote."""

from __future__ import annotations

import json
import math
import re
import threading
import zlib
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from agents.ports import INTENTS, Intent, IntentPrediction

MODEL_DIR = Path(__file__).resolve().parent / "intent_model"
MAX_TOKENS = 128
# Char n-grams are computed on at most this many characters: enough for any spoken turn, and it bounds
# the cost of a pathological input (MiniLM truncates to 128 tokens, about the same span).
MAX_CHARS = 600
# The confidence below which callers should treat a prediction as doubtful (e.g. hand it to an LLM).
DEFAULT_THRESHOLD = 0.55
# The supervisor's trigger head (evals/supervisor/train_head.py): a softmax over the same sentence embedding.
TRIGGER_HEAD_FILE = "triggers.npz"

FloatArray = npt.NDArray[np.float32]
_WORD = re.compile(r"\w+", re.UNICODE)


class MiniLMEncoder:
    """Sentence embeddings from the int8 all-MiniLM-L6-v2 ONNX export: mean pooling, then L2 norm.

    Args:
        model_path: the int8 `.onnx` file.
        tokenizer_path: the matching `tokenizer.json`.
        threads: onnxruntime intra-op threads; 1 gives the best single-utterance latency on a busy box.
    """

    def __init__(self, model_path: Path, tokenizer_path: Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        # The exported tokenizer.json pads every input to 128 tokens; padding to the longest input in the
        # batch instead cuts single-utterance latency several times over.
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        # onnxruntime's run() is thread-safe; the tokenizer's is not promised to be. Only tokenizing is
        # serialised, so two calls' classifications can run on two cores at once.
        self._tokenize_lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Embeds texts as unit-length 384-d float32 vectors, one row per text.

        Each text runs alone: dynamic int8 quantisation takes its activation scales from the whole input,
        padding included, so a text embedded in a padded batch came out different from the same text alone (a
        confidence 0.08 apart), and a head trained on batched vectors met other vectors in a live turn.
        """
        if not texts:
            return np.zeros((0, 384), np.float32)
        return np.concatenate([self._embed_one(text) for text in texts])

    def _embed_one(self, text: str) -> FloatArray:
        with self._tokenize_lock:
            encodings = self._tokenizer.encode_batch([text])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )
        states = np.asarray(hidden[0], dtype=np.float32)
        summed = (states * mask[..., None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return cast(FloatArray, (pooled / np.maximum(norms, 1e-12)).astype(np.float32))


def char_ngram_counts(text: str, dim: int) -> Counter[int]:
    """Hashed counts of char 2-5-grams inside word boundaries plus word uni- and bigrams.

    crc32 is used instead of `hash()` because Python salts string hashes per process, and the
    trained weights must line up with the same buckets at run time.
    """
    words = _WORD.findall(text[:MAX_CHARS].lower())
    counts: Counter[int] = Counter()
    for word in words:
        padded = f" {word} "
        for n in range(2, 6):
            for i in range(len(padded) - n + 1):
                counts[zlib.crc32(padded[i : i + n].encode()) % dim] += 1
        counts[zlib.crc32(f"w:{word}".encode()) % dim] += 1
    for first, second in zip(words, words[1:], strict=False):
        counts[zlib.crc32(f"b:{first} {second}".encode()) % dim] += 1
    return counts


def char_ngram_vector(text: str, dim: int, idf: FloatArray) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Sparse TF-IDF vector (sublinear tf, L2-normalised) as (bucket indices, values)."""
    counts = char_ngram_counts(text, dim)
    if not counts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    tf = np.fromiter((1.0 + math.log(c) for c in counts.values()), dtype=np.float32, count=len(counts))
    values = tf * idf[idx]
    norm = float(np.linalg.norm(values))
    return idx, (values / norm if norm > 0 else values).astype(np.float32)


def neighbour_probs(
    queries: FloatArray,
    vectors: FloatArray,
    labels: npt.NDArray[np.int64],
    weights: FloatArray,
    k: int,
    scale: float,
    n_labels: int,
) -> FloatArray:
    """Per label, the share of the `k` nearest training vectors' votes (weight times exp(cosine / scale)).

    Unit-length vectors, so the dot product is the cosine similarity. One row per query.
    """
    sims = queries @ vectors.T
    k = min(k, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    near = np.take_along_axis(sims, top, axis=1)
    # Subtracting each row's best similarity keeps exp() in range; the shares are unchanged.
    votes = weights[top] * np.exp((near - near.max(axis=1, keepdims=True)) / scale)
    out = np.zeros((len(queries), n_labels), np.float64)
    for column in range(n_labels):
        out[:, column] = (votes * (labels[top] == column)).sum(axis=1)
    return cast(FloatArray, (out / np.maximum(out.sum(axis=1, keepdims=True), 1e-30)).astype(np.float32))


def softmax(logits: FloatArray) -> FloatArray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return cast(FloatArray, exp / exp.sum(axis=-1, keepdims=True))


class OnnxIntentClassifier:
    """The `IntentClassifier` port on embedded models: no network, no torch, a few ms per utterance.

    The features (MiniLM sentence embedding, hashed char n-gram TF-IDF, or both side by side) and the
    linear softmax head come from the files in `model_dir`; `manifest.json` says which features the head
    was trained on. Confidence is the temperature-scaled softmax probability of the top intent, blended with
    the votes of the nearest training utterances when the head ships them, so a threshold such as
    `DEFAULT_THRESHOLD` marks doubtful turns for the LLM fallback.

    Args:
        model_dir: folder with `manifest.json`, `head.npz` and, if the head uses MiniLM, the ONNX
            model and `tokenizer.json`.
        threads: onnxruntime intra-op threads.
    """

    def __init__(self, model_dir: Path | str = MODEL_DIR, threads: int = 1) -> None:
        self.model_dir = Path(model_dir)
        self.manifest: dict[str, Any] = json.loads((self.model_dir / "manifest.json").read_text())
        head = self.manifest["head"]
        self.features: list[str] = list(head["features"])
        self.labels: tuple[Intent, ...] = tuple(cast(Intent, label) for label in head["labels"])
        if set(self.labels) != set(INTENTS):
            raise ValueError(f"head labels {self.labels} do not match the router intents {INTENTS}")
        with np.load(self.model_dir / head["file"]) as weights:
            self._w_dense: FloatArray | None = weights["w_dense"].astype(np.float32) if "w_dense" in weights else None
            self._w_sparse: FloatArray | None = (
                weights["w_sparse"].astype(np.float32) if "w_sparse" in weights else None
            )
            self._idf: FloatArray | None = weights["idf"].astype(np.float32) if "idf" in weights else None
            self._bias: FloatArray = weights["bias"].astype(np.float32)
            self.temperature = float(weights["temperature"])
            # The training utterances' embeddings, labels and row weights, for the nearest-neighbour vote.
            self._neighbours: tuple[FloatArray, npt.NDArray[np.int64], FloatArray] | None = None
            if "neighbour_vectors" in weights:
                self._neighbours = (
                    weights["neighbour_vectors"].astype(np.float32),
                    weights["neighbour_labels"].astype(np.int64),
                    weights["neighbour_weights"].astype(np.float32),
                )
        vote = head.get("neighbours") or {}
        self._neighbour_k = int(vote.get("k", 0))
        self._neighbour_share = float(vote.get("share", 0.0))
        self._neighbour_scale = float(vote.get("scale", 1.0))
        self._sparse_weight = float(head.get("sparse_scale", 1.0))
        # The trigger head reads the embedding the router's head has just used, so a turn is embedded once.
        self._triggers: tuple[FloatArray, FloatArray, tuple[str, ...], float] | None = None
        if "minilm" in self.features and (self.model_dir / TRIGGER_HEAD_FILE).exists():
            with np.load(self.model_dir / TRIGGER_HEAD_FILE) as t:
                self._triggers = (
                    t["w"].astype(np.float32),
                    t["bias"].astype(np.float32),
                    tuple(str(label) for label in t["labels"]),
                    float(t["threshold"]),
                )
        self._encoder: MiniLMEncoder | None = None
        if "minilm" in self.features:
            files = self.manifest["files"]
            self._encoder = MiniLMEncoder(self.model_dir / files["onnx"], self.model_dir / files["tokenizer"], threads)

    def logits(self, texts: Sequence[str]) -> FloatArray:
        """Raw head scores (before temperature), shape (len(texts), 5), in `self.labels` order."""
        return self._scores(texts)[0]

    def probabilities(self, texts: Sequence[str]) -> FloatArray:
        """Calibrated probabilities, shape (len(texts), 5): the head's, blended with the neighbours' vote."""
        return self._blend(texts)[0]

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """The sentence embeddings both heads read (empty rows when the head uses no MiniLM features)."""
        return self._encoder.embed(texts) if self._encoder is not None else np.zeros((len(texts), 0), np.float32)

    def triggers(self, dense: FloatArray) -> list[str | None]:
        """The escalation trigger the trigger head reads in each embedding, if its probability reaches the
        head's threshold (None without a trigger head)."""
        if self._triggers is None:
            return [None] * len(dense)
        w, bias, labels, threshold = self._triggers
        probs = softmax(dense @ w + bias)
        best = probs.argmax(axis=1)
        return [
            labels[k] if labels[k] != "none" and row[k] >= threshold else None
            for k, row in zip(best, probs, strict=True)
        ]

    def _blend(self, texts: Sequence[str]) -> tuple[FloatArray, FloatArray | None]:
        """The router's probabilities, and the embeddings they came from (for the trigger head to read too)."""
        logits, dense = self._scores(texts)
        probs = softmax(logits / self.temperature)
        if self._neighbours is not None and dense is not None and self._neighbour_share > 0:
            vectors, labels, weights = self._neighbours
            vote = neighbour_probs(
                dense, vectors, labels, weights, self._neighbour_k, self._neighbour_scale, len(self.labels)
            )
            probs = (1 - self._neighbour_share) * probs + self._neighbour_share * vote
        return probs, dense

    def _scores(self, texts: Sequence[str]) -> tuple[FloatArray, FloatArray | None]:
        out = np.tile(self._bias, (len(texts), 1))
        dense: FloatArray | None = None
        if self._encoder is not None and self._w_dense is not None:
            dense = self._encoder.embed(texts)
            out += dense @ self._w_dense
        if self._w_sparse is not None and self._idf is not None:
            dim = self._w_sparse.shape[0]
            for row, text in enumerate(texts):
                idx, values = char_ngram_vector(text, dim, self._idf)
                out[row] += self._sparse_weight * (values @ self._w_sparse[idx])
        return out, dense

    def classify_batch(self, texts: Sequence[str]) -> list[IntentPrediction]:
        """Classifies several utterances at once (for evals; a live turn uses `classify`)."""
        results: list[IntentPrediction | None] = [None] * len(texts)
        todo = [i for i, text in enumerate(texts) if text.strip()]
        for i in set(range(len(texts))) - set(todo):
            results[i] = self._empty()
        if todo:
            probs, dense = self._blend([texts[i] for i in todo])
            triggers = self.triggers(dense) if dense is not None else [None] * len(todo)
            for i, row, trigger in zip(todo, probs, triggers, strict=True):
                best = int(row.argmax())
                scores: dict[str, float] = {label: float(p) for label, p in zip(self.labels, row, strict=True)}
                results[i] = IntentPrediction(
                    intent=self.labels[best], confidence=float(row[best]), scores=scores, trigger=trigger
                )
        return [r for r in results if r is not None]

    def classify(self, text: str) -> IntentPrediction:
        """Classifies one caller utterance.

        Args:
            text: the transcript of the turn; may be empty, very long or in any language.

        Returns:
            The most likely intent, its calibrated probability as `confidence`, and every intent's
            probability in `scores`. Empty or whitespace-only text gives `out_of_scope` with a uniform
            (low) confidence rather than an error.
        """
        return self.classify_batch([text])[0]

    def _empty(self) -> IntentPrediction:
        # Silence or a blank transcript says nothing about intent: uniform scores, well under any threshold.
        uniform = 1.0 / len(self.labels)
        return IntentPrediction(intent="out_of_scope", confidence=uniform, scores=dict.fromkeys(self.labels, uniform))


@lru_cache(maxsize=4)
def _load(path: str) -> OnnxIntentClassifier:
    return OnnxIntentClassifier(path)


def load_classifier(path: Path | str | None = None) -> OnnxIntentClassifier:
    """The shipped (or given) classifier, loaded once per process and folder.

    Args:
        path: a model folder; defaults to `orchestrator/providers/intent_model`.
    """
    return _load(str(Path(path).resolve() if path is not None else MODEL_DIR))
