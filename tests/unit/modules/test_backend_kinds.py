"""The transformers and openai backend kinds load, answer, and return the runtime's types.

Transformers models are tiny, built from configs with steered weights (tiny_models.py);
the openai kind talks to a loopback replay server. Nothing reaches a hub or the internet.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modules.backends.base import Call, CallFailure
from modules.catalog import load_catalog, parse_catalog
from modules.errors import CatalogError
from modules.executor import BatchExecutor, ItemInput, Route
from modules.program import parse_program
from modules.registry import KINDS, Registry
from modules.synthesis.replay_server import ReplayChatServer, Reply
from modules.tasks import local_round_runner

import tiny_models

PAPER = Path(__file__).resolve().parents[3] / "modules" / "catalogs" / "paper.yaml"
IMAGE = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)  # h 40, w 50


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {"owlvit": tiny_models.owlvit(root / "owlvit"), "vilt-yes": tiny_models.vilt(root / "vy", "yes"),
            "vilt-2": tiny_models.vilt(root / "v2", "2"), "llava-yes": tiny_models.llava(root / "ly", "yes"),
            "llava-3": tiny_models.llava(root / "l3", "3"), "gpt2": tiny_models.gpt2(root / "g", "paris")}


def _hf(name: str, path: Path, task: str, functions: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "transformers", "model": str(path), "task": task, "functions": functions,
            "local_files_only": True, "max_new_tokens": 3, **extra}


def _calls(*specs: tuple[str, tuple[str, ...]]) -> list[Call]:
    return [Call(f, None if f == "llm_query" else IMAGE, args) for f, args in specs]


def _values(outputs: list) -> list:
    return [o.value for o in outputs]


def test_zero_shot_detection_finds_boxes_in_the_call_image(models) -> None:
    from modules.backends.hf import TransformersBackend

    registry = Registry(parse_catalog([
        _hf("owl", models["owlvit"], "zero-shot-object-detection", ["find", "exists", "count"], threshold=0.0),
        _hf("owl-strict", models["owlvit"], "zero-shot-object-detection", ["find", "exists", "count"],
            threshold=1.0)]))
    backend = registry.get("owl")
    outputs = backend.infer(_calls(("find", ("circle",)), ("exists", ("circle",)), ("count", ("circle",))))
    boxes, exists, count = _values(outputs)
    # The steered box head predicts its 4x4 anchor grid, scaled to the 50x40 image and clipped
    # to it (the pipeline itself reports the bottom row and right column past the edge).
    assert (exists, count) == (True, 16)
    assert sorted(boxes) == [(x0, y0, x1, y1) for x0, x1 in ((6, 18), (18, 31), (31, 43), (43, 50))
                             for y0, y1 in ((5, 15), (14, 25), (24, 34), (34, 40))]
    assert all(type(v) is int for b in boxes for v in b)
    assert _values(registry.get("owl-strict").infer(_calls(("find", ("circle",)), ("exists", ("circle",)),
                                                           ("count", ("circle",))))) == [[], False, 0]
    n = backend.params()
    assert isinstance(backend, TransformersBackend)
    assert n == sum(p.numel() for p in backend._model.parameters()) and n > 0
    assert backend.flops(Call("find", IMAGE, ("circle",))) == 2.0 * n
    assert {(o.usage.flops, o.usage.params, o.usage.tokens, o.usage.confidence) for o in outputs} == {
        (2.0 * n, n, 0, None)}


def test_classifier_vqa_answers_are_read_into_bool_int_and_str(models) -> None:
    yes = Registry(parse_catalog([_hf("vqa", models["vilt-yes"], "visual-question-answering",
                                      ["exists", "verify_property", "query", "count"])])).get("vqa")
    outputs = yes.infer(_calls(("exists", ("circle",)), ("verify_property", ("circle", "red")),
                               ("query", ("is the circle red?",))))
    assert _values(outputs) == [True, True, "yes"]
    assert all(0.0 < (o.usage.confidence or 0.0) <= 1.0 for o in outputs)  # the classifier's label probability
    # an unreadable reply: alone, the call's own failure with its usage; in a batch, it rejects the batch
    (alone,) = yes.infer(_calls(("count", ("circle",))))
    assert alone.value == CallFailure("count(): cannot read a number from the model's reply 'yes'")
    assert alone.usage.tokens > 0 and alone.usage.flops == 2.0 * yes.params() * alone.usage.tokens
    with pytest.raises(ValueError, match=r"count\(\): cannot read a number from the model's reply 'yes'"):
        yes.infer(_calls(("exists", ("circle",)), ("count", ("circle",))))
    two = Registry(parse_catalog([_hf("vqa2", models["vilt-2"], "visual-question-answering", ["count"])])).get("vqa2")
    assert _values(two.infer(_calls(("count", ("circle",))))) == [2]


def test_image_text_to_text_answers_every_function_through_the_chat_template(models) -> None:
    functions = ["exists", "count", "verify_property", "query", "find", "llm_query"]
    yes = Registry(parse_catalog([_hf("vlm", models["llava-yes"], "image-text-to-text", functions)])).get("vlm")
    assert _values(yes.infer(_calls(("exists", ("circle",)), ("verify_property", ("circle", "red")),
                                    ("query", ("is it red?",))))) == [True, True, "yes yes yes"]
    (alone,) = yes.infer(_calls(("find", ("circle",))))
    assert alone.value == CallFailure("find(): cannot read boxes from the model's reply 'yes yes yes'")
    three = Registry(parse_catalog([_hf("vlm3", models["llava-3"], "image-text-to-text", functions)])).get("vlm3")
    calls = _calls(("count", ("circle",)), ("llm_query", ("how many sides?",)))
    outputs = three.infer(calls)
    assert _values(outputs) == [3, "3 3 3"]
    # prompt tokens (image patches included, padding not) plus three generated
    assert [o.usage.tokens for o in outputs] == [20, 8]
    assert [o.usage.flops / (2.0 * three.params()) for o in outputs] == [20.0, 8.0]
    assert three.flops(calls[0]) == 2.0 * three.params()  # before it runs: one token


def test_text_generation_answers_llm_query(models) -> None:
    backend = Registry(parse_catalog([_hf("llm", models["gpt2"], "text-generation", ["llm_query"])])).get("llm")
    call = Call("llm_query", None, ("what is the capital of france ?",))
    (output,) = backend.infer([call])
    assert output.value == "paris paris paris"
    assert output.usage.flops == 2.0 * backend.params() * (7 + 3)  # 7 prompt tokens, 3 generated


def test_a_program_runs_on_transformers_backends_end_to_end(models) -> None:
    registry = Registry(parse_catalog([
        _hf("owl", models["owlvit"], "zero-shot-object-detection", ["find", "exists", "count"], threshold=0.0),
        _hf("vqa", models["vilt-yes"], "visual-question-answering", ["verify_property", "query"])]))

    class _ByFunction:
        def choose(self, item_id, site, features) -> Route:
            return Route("vqa" if site.function == "verify_property" else "owl", 1.0)

    program = parse_program('def f(image):\n    if not exists(image, "circle"):\n        return False\n'
                            '    n = 0\n    for c in find(image, "circle"):\n'
                            '        if verify_property(c, "circle", "red"):\n            n = n + 1\n'
                            '    return n == 16\n')
    (out,) = BatchExecutor(program, _ByFunction(), local_round_runner(registry)).run(
        [ItemInput("i0", IMAGE, np.zeros(2))])
    assert (out.status, out.answer, out.error) == ("ok", True, None)
    assert {d.call_site: (d.backend, d.calls) for d in out.decisions} == {
        "exists@2:11": ("owl", 1), "find@5:13": ("owl", 1), "verify_property@6:11": ("vqa", 16)}


def _png_size(data_url: str) -> tuple[int, int]:
    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).size


def _vision_answer(body: dict[str, Any]) -> Reply | str:
    content = body["messages"][0]["content"]
    text = content[0]["text"]
    if text.startswith("Find every"):
        return '```json\n[{"bbox_2d": [1, 2, 10, 12], "label": "circle"}, [30, 20, 100, 100], [60, 0, 70, 5]]\n```'
    answers: dict[str, Reply | str] = {
        "Is there a circle in the image? Answer yes or no.": "Yes, there is.",
        "How many circles are in the image? Answer with a number.": Reply("There are three.", usage=(300, 4)),
        "Is the circle in the image red? Answer yes or no.": "no",
        "What colour is it?": "Purple.", "Capital of France?": "Paris"}
    return answers[text]


def test_openai_vision_chat_sends_images_retries_and_parses_answers() -> None:
    from modules.backends.openai_compat import OpenAIBackend

    script: list = [Reply(status=503, body="warming up")] + [_vision_answer] * 6
    with ReplayChatServer(script, model="qwen-vl") as server:
        registry = Registry(parse_catalog([{
            "name": "vlm", "kind": "openai", "base_url": server.url, "model": "qwen-vl", "api_key_env": None,
            "functions": ["find", "exists", "count", "verify_property", "query", "llm_query"],
            "backoff_s": 0.01, "max_concurrency": 3, "n_params": 1000,
            "price_per_1m_input_tokens": 2.0, "price_per_1m_output_tokens": 10.0}]))
        backend = registry.get("vlm")
        assert isinstance(backend, OpenAIBackend)
        calls = _calls(("exists", ("circle",)), ("count", ("circle",)), ("verify_property", ("circle", "red")),
                       ("find", ("circle",)), ("query", ("What colour is it?",)),
                       ("llm_query", ("Capital of France?",)))
        outputs = backend.infer(calls)
    assert _values(outputs) == [True, 3, False, [(1, 2, 10, 12), (30, 20, 50, 40)], "purple", "Paris"]
    images = [part for r in server.requests[1:] for part in r["body"]["messages"][0]["content"]
              if part["type"] == "image_url"]
    # requests[0] was refused (503) and retried; the other six are one per call, in any order
    assert [_png_size(p["image_url"]["url"]) for p in images] == [(50, 40)] * 5  # none for llm_query
    assert server.requests[1]["body"]["model"] == "qwen-vl" and backend._client.retries == 1
    usage = outputs[1].usage
    assert (usage.tokens, usage.params) == (304, 1000)
    assert usage.flops == 2.0 * 1000 * 304
    assert usage.price == pytest.approx((300 * 2.0 + 4 * 10.0) / 1e6)
    assert backend.flops(calls[1]) == 2.0 * 1000  # before it runs: one token
    assert (backend.prompt_tokens, backend.completion_tokens) == (350, 29)


def test_openai_unreadable_answers_fail_one_call_without_a_second_request() -> None:
    with ReplayChatServer(["Yes", "maybe", "No"]) as server:
        registry = Registry(parse_catalog([{
            "name": "vlm", "kind": "openai", "base_url": server.url, "model": "m", "api_key_env": None,
            "functions": ["exists"], "max_concurrency": 1}]))
        program = parse_program('def f(image):\n    return exists(image, "circle")\n')

        class _One:
            def choose(self, item_id, site, features) -> Route:
                return Route("vlm", 1.0)

        items = [ItemInput(f"i{k}", IMAGE, np.zeros(2)) for k in range(3)]
        outs = BatchExecutor(program, _One(), local_round_runner(registry)).run(items)
    assert [(o.status, o.answer) for o in outs] == [("ok", True), ("failed", None), ("ok", False)]
    assert outs[1].error == ("exists@2:11[vlm]: exists(): cannot read yes or no from the model's "
                             "reply 'maybe'")
    assert len(server.requests) == 3
    assert [d.calls for o in outs for d in o.decisions] == [1, 1, 1]  # the failed call is charged too


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "x", "kind": "transformers", "model": "m", "task": "zero-shot-object-detection",
      "functions": ["query"]}, "task 'zero-shot-object-detection' cannot serve ['query']"),
    ({"name": "x", "kind": "transformers", "model": "m", "task": "captioning", "functions": ["query"]},
     "Input should be 'zero-shot-object-detection'"),
    ({"name": "x", "kind": "openai", "base_url": "localhost:8000", "model": "m", "functions": ["query"]},
     "String should match pattern '^https?://'"),
])
def test_invalid_specs_are_rejected_by_the_catalog(entry: dict, message: str) -> None:
    with pytest.raises(CatalogError, match="invalid backend catalog") as info:
        parse_catalog([entry])
    assert message in str(info.value)


def test_a_missing_local_model_is_a_clear_error(tmp_path: Path) -> None:
    registry = Registry(parse_catalog([_hf("gone", tmp_path / "nothing", "text-generation", ["llm_query"])]))
    with pytest.raises(CatalogError, match=r"backend 'gone': cannot load text-generation model '.*nothing'"):
        registry.get("gone")


def test_the_paper_catalog_validates_and_uses_registered_kinds() -> None:
    specs = load_catalog(PAPER)
    assert {s.kind for s in specs} <= set(KINDS)
    names = [s.name for s in specs]
    assert names == ["gdino-t", "gdino-b", "qwen-vl-3b", "qwen-vl-72b", "llama-8b", "llama-70b", "qwen-vl-72b-mono"]
    assert all(s.price > 0 for s in specs)
    assert [s.name for s in specs if s.baseline_only] == ["qwen-vl-72b-mono"]


@pytest.mark.parametrize(("function", "text", "expected"), [
    ("exists", "Yes.", True), ("exists", "No, there is none.", False), ("verify_property", "TRUE", True),
    ("count", "I count 4 circles", 4), ("count", "Two.", 2), ("query", "  Purple.\nbecause...", "purple"),
    ("find", "[]", []), ("find", "There are none.", []),
    ("find", '{"bbox_2d": [-5, 3.6, 20, 80]}, [10, 10, 10, 20]', [(0, 4, 20, 40)]),  # clipped; empty dropped
    ("llm_query", " Paris \n", "Paris"),
])
def test_free_text_answers_are_read_into_runtime_types(function: str, text: str, expected: Any) -> None:
    from modules.backends.fm_text import parse_answer

    args = ("circle", "red") if function == "verify_property" else ("circle",)
    assert parse_answer(Call(function, None if function == "llm_query" else IMAGE, args), text) == expected


@pytest.mark.parametrize(("function", "text"), [("exists", "maybe"), ("count", "several"), ("find", "somewhere")])
def test_unreadable_answers_raise_value_errors_naming_the_reply(function: str, text: str) -> None:
    from modules.backends.fm_text import parse_answer

    with pytest.raises(ValueError, match=rf"{function}\(\): cannot read .* from the model's reply '{text}'"):
        parse_answer(Call(function, IMAGE, ("circle",)), text)
