"""vqa-xl, the benchmarks' monolithic model: architecture, decoding, committed weights, cost."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from benchmarks.backends import BENCH_MONO, bench_specs, monolithic_name, tasks_of
from benchmarks.queryset import default_queryset, load_queryset
from benchmarks.sampling import draw_item
from benchmarks.train import answer_vocabulary
from benchmarks.truth import NA, load_facts
from modules.backends.base import Call
from modules.backends.ocr import TESSDATA
from modules.backends.vision import (
    ARCHITECTURES,
    Q_BUCKETS,
    AnswerVocabulary,
    OpenVQA,
    TorchVisionBackend,
    encode_question,
)
from modules.catalog import WEIGHTS_DIR, TorchVisionSpec, load_catalog
from modules.program import parse_program
from modules.registry import Registry
from policies.costs import monolithic_backend, unit_flops

BINARY_Q = "Is there a red circle to the left of a blue square?"
OPEN_Q = "What colour is the circle to the left of the blue square?"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(bench_specs())


@pytest.fixture(scope="module")
def querysets() -> tuple:
    return load_queryset(default_queryset("binary")), load_queryset(default_queryset("openform"))


def test_open_vqa_shapes() -> None:
    assert ARCHITECTURES["mono_open"] is OpenVQA
    model = OpenVQA(width=4, n_answers=7).eval()
    x, q = torch.rand(3, 3, 32, 32), torch.stack([encode_question(BINARY_Q)] * 3)
    h, mid = model.trunk(x)
    assert h.shape == (3, 16, 4, 4) and mid.shape == (3, 16, 8, 8)  # stride 8 and stride 4
    assert model(x, q).shape == (3, 7)
    assert model.aux(mid).shape == (3, 11, 8, 8) and model.sign_logits(h).shape[0] == 3
    assert q.shape == (3, Q_BUCKETS)


def test_decoding_keeps_binary_questions_to_yes_or_no() -> None:
    vocab = AnswerVocabulary(["N/A", "no", "red", "yes"], {BINARY_Q: ["yes", "no"], OPEN_Q: ["N/A", "red"]})
    logits = torch.tensor([[9.0, 1.0, 5.0, 2.0]] * 4)  # N/A best, then red, then yes, then no
    questions = [BINARY_Q, BINARY_Q.lower().rstrip("?"), OPEN_Q, "Something never asked?"]
    assert [answer for answer, _ in vocab.decode(logits, questions)] == ["yes", "yes", "N/A", "N/A"]
    logits[:, 0] = -9.0
    assert [answer for answer, _ in vocab.decode(logits, questions)] == ["yes", "yes", "red", "red"]


def test_committed_vocabulary_covers_every_benchmark_answer(querysets: tuple) -> None:
    data = json.loads((WEIGHTS_DIR / "vqa-xl.json").read_text())
    facts = load_facts()
    assert data["answers"] == answer_vocabulary(list(querysets), facts)
    binary, openform = querysets
    assert all(data["answer_sets"][q.question] == ["yes", "no"] for q in binary.queries)
    rng = np.random.default_rng(5)
    for query in openform.queries[::5]:  # a real answer of ten queries is in its answer set
        item, _, _, answer, _ = draw_item(openform, query, query.positive[0], lambda a: a != NA, rng, facts)
        assert answer in data["answer_sets"][query.question], (query.id, answer)
        assert NA in data["answer_sets"][query.question] or not query.distractors


def test_backend_serves_benchmark_questions(registry: Registry, querysets: tuple) -> None:
    backend = registry.get(BENCH_MONO)
    assert isinstance(backend, TorchVisionBackend) and backend.vocab is not None
    facts = load_facts()
    binary, openform = querysets
    rng = np.random.default_rng(3)
    calls = []
    for qs in (binary, openform):
        query = qs.queries[1]
        item, *_ = draw_item(qs, query, query.positive[0], lambda a: True, rng, facts)
        calls.append(Call("query", item.image, (query.question,)))
    calls.append(Call("query", np.zeros((0, 0, 3), np.uint8), (binary.queries[0].question,)))
    answers = [out.value for out in backend.infer(calls)]
    vocab = backend.vocab
    assert answers[0] in ("yes", "no") and answers[2] == "no"
    assert answers[1] in [vocab.answers[i] for i in vocab.allowed(calls[1].args[0])]
    assert backend.params() > 1_000_000 and (WEIGHTS_DIR / "vqa-xl.pt").stat().st_size <= 8 * 2**20


def test_vqa_xl_is_the_most_expensive_plan_per_item(registry: Registry, querysets: tuple) -> None:
    """More FLOPs than 4e9 and than one item of any benchmark program with every call site on its
    largest backend (each call site counted once; llm_query priced at a generous 1 GFLOP, since
    loading kb-minilm to measure its 0.2 takes long)."""
    pytest.importorskip("rapidocr_onnxruntime", reason="pip install --no-deps rapidocr-onnxruntime==1.4.4")
    if shutil.which("tesseract") is None or not TESSDATA.exists():  # read_text's ladder starts with it
        pytest.skip(f"tesseract or {TESSDATA} is missing: apt-get install -y tesseract-ocr tesseract-ocr-eng")
    xl = unit_flops(registry, BENCH_MONO, "query")
    assert xl > 4e9
    largest = {f: max(unit_flops(registry, n, f) for n in registry.candidates(f))
               for f in ("find", "exists", "count", "verify_property", "query")}
    largest["llm_query"] = 1e9
    largest["read_text"] = max(unit_flops(registry, n, "read_text") for n in registry.candidates("read_text"))
    for qs in querysets:
        per_item = [sum(largest[s.function] for s in parse_program(q.program).call_sites) for q in qs.queries]
        assert xl > np.mean(per_item), (qs.benchmark, np.mean(per_item))


def test_vqa_xl_is_the_benchmarks_monolithic_model(registry: Registry) -> None:
    spec = registry.spec(BENCH_MONO)
    assert isinstance(spec, TorchVisionSpec)
    assert spec.baseline_only and spec.functions == ["query"] and spec.architecture == "mono_open"
    assert monolithic_name(registry) == BENCH_MONO == monolithic_backend(registry)
    assert tasks_of(spec) == ["vqa", "vqa-open"] == tasks_of(registry.spec("vqa-mono"))
    assert BENCH_MONO not in registry.candidates("query")  # never routed to by a program
    demo = Registry(load_catalog())
    assert monolithic_backend(demo) == "vqa-mono"
