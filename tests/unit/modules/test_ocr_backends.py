"""OCR backends (real ddddocr, Tesseract, RapidOCR), their FLOP counts, and read_text."""

from __future__ import annotations

import importlib.util
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from benchmarks.signs import render_item
from modules.backends.base import Call
from modules.backends.ocr import (
    LOCALISER_OPS_PER_PIXEL,
    TESSDATA,
    localise_text,
    normalise_text,
    representative_text_image,
    tesseract_lstm_params,
)
from modules.backends.onnx_cost import onnx_flops, onnx_params
from modules.catalog import parse_catalog
from modules.executor import BatchExecutor, ItemInput, Route
from modules.program import parse_program
from modules.registry import Registry
from modules.tasks import local_round_runner

ENGINES = {
    "ddddocr": (importlib.util.find_spec("ddddocr") is not None, "pip install ddddocr==1.6.1"),
    "tesseract": (shutil.which("tesseract") is not None and TESSDATA.exists(),
                  "apt-get install -y tesseract-ocr tesseract-ocr-eng"),
    "rapidocr": (importlib.util.find_spec("rapidocr_onnxruntime") is not None,
                 "pip install --no-deps rapidocr-onnxruntime==1.4.4"),
}
ENGINES["pprec"] = ENGINES["rapidocr"]
#: Per engine: FLOPs of the three calls below (easy STOP sign, easy BANANA sign, no sign).
FLOPS = {"tesseract": [69538083.36842105, 110936185.6, 1048576.0],
         "ddddocr": [762906624.0, 1232919552.0, 1048576.0],
         "pprec": [1303411456.0, 1303411456.0, 1048576.0],
         "rapidocr": [7423540800.0, 7423540800.0, 7423540800.0]}
PARAMS = {"tesseract": 401636, "ddddocr": 13520310, "pprec": 2690286, "rapidocr": 3995659}


def _registry(engine: str) -> Registry:
    return Registry(parse_catalog([{"name": f"ocr-{engine}", "kind": "ocr", "engine": engine,
                                    "functions": ["read_text"]}]))


def test_normalise_text() -> None:
    assert normalise_text(" stop!\n Exit-2 ") == "STOP EXIT 2"
    assert normalise_text("…") == ""


def test_localiser_finds_an_easy_sign() -> None:
    item = render_item(0, sign="STOP", difficulty="easy")
    assert item.sign is not None and item.sign.box == (86, 100, 126, 115)
    assert localise_text(item.image) == (84, 99, 128, 116)
    assert localise_text(render_item(2, sign=None, difficulty="easy").image) is None


@pytest.mark.parametrize("engine", ["tesseract", "ddddocr", "pprec", "rapidocr"])
def test_engine_reads_easy_signs_with_measured_cost(engine: str) -> None:
    available, how = ENGINES[engine]
    if not available:
        pytest.skip(f"{engine} is not installed: {how}")
    backend = _registry(engine).get(f"ocr-{engine}")
    items = [render_item(0, sign="STOP", difficulty="easy"), render_item(1, sign="BANANA", difficulty="easy"),
             render_item(2, sign=None, difficulty="easy")]
    calls = [Call("read_text", it.image, ()) for it in items]
    outputs = backend.infer(calls)
    assert [o.value for o in outputs] == ["STOP", "BANANA", ""]
    assert [o.usage.flops for o in outputs] == pytest.approx(FLOPS[engine], rel=1e-9)
    assert [backend.flops(c) for c in calls] == pytest.approx(FLOPS[engine], rel=1e-9)  # by running it
    assert backend.params() == PARAMS[engine]
    with pytest.raises(ValueError, match="serves only read_text"):
        backend.infer([Call("query", items[0].image, ("what?",))])


def test_representative_text_image_holds_a_findable_word() -> None:
    image = representative_text_image()
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert localise_text(image) is not None
    assert np.array_equal(image, representative_text_image())  # deterministic


def test_ocr_arms_come_out_cheapest_first_in_catalog_order() -> None:
    """The benchmark's read_text ladder ranks by measured cost on a patch with text.

    On a blank patch every line reader costs only its localiser, so ties would leave the order
    to chance; the representative call must make Tesseract < PP-OCRv4 rec < RapidOCR.
    """
    missing = [how for engine, (ok, how) in ENGINES.items() if engine != "ddddocr" and not ok]
    if missing:
        pytest.skip(f"OCR engines missing: {missing}")
    from benchmarks.backends import BENCH_CATALOG
    from modules.catalog import load_catalog
    from policies.arms import arms_for
    from policies.costs import unit_flops
    from policies.specs import PolicySpec

    registry = Registry(load_catalog(BENCH_CATALOG))
    catalog_order = registry.candidates("read_text")
    assert catalog_order == ["ocr-tess", "ocr-pprec", "ocr-rapid"]
    program = parse_program('def f(image):\n    return read_text(image) == "STOP"\n')
    arms = arms_for(program, registry, PolicySpec("cheapest", "cheapest"))
    assert arms == {"read_text@2:11": catalog_order}
    flops = [unit_flops(registry, n, "read_text") for n in catalog_order]
    assert flops[0] * 10 < flops[1] < flops[2] and flops[2] >= 30 * flops[0]
    assert min(flops) > 2 * LOCALISER_OPS_PER_PIXEL * 128 * 128  # every reader ran, not just the localiser


def test_read_text_runs_in_programs_and_wrong_types_fail_the_item() -> None:
    registry = Registry(parse_catalog([
        {"name": "reader", "kind": "fake", "functions": ["read_text"], "default": "STOP"},
        {"name": "broken", "kind": "fake", "functions": ["read_text"], "default": 7}]))
    program = parse_program('def f(image):\n    return read_text(image) == "STOP"\n')
    assert [s.id for s in program.call_sites] == ["read_text@2:11"]
    image = np.zeros((8, 8, 3), np.uint8)
    for backend, status, answer in (("reader", "ok", True), ("broken", "failed", None)):
        router = type("R", (), {"choose": lambda self, i, s, f, b=backend: Route(b, 1.0)})()
        out = BatchExecutor(program, router, local_round_runner(registry)).run([ItemInput("i", image, np.zeros(1))])
        assert (out[0].status, out[0].answer) == (status, answer)


def _tiny_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    m = numpy_helper.from_array(np.ones((4 * 6 * 6, 5), np.float32), "m")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[0, 0, 0, 0]),
         helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Reshape", ["r", "shape"], ["f"]),
         helper.make_node("MatMul", ["f", "m"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, m, shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_onnx_flops_count_conv_and_matmul_exactly(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path)
    conv = 2 * (4 * 6 * 6) * (3 * 3 * 3)  # output elements x MACs per output
    matmul = 2 * 1 * 5 * (4 * 6 * 6)
    assert onnx_flops(str(path), (1, 3, 8, 8)) == conv + matmul
    assert onnx_params(str(path)) == 4 * 27 + 144 * 5  # the int64 shape constant is no weight
    with pytest.raises(ValueError, match="rank 4"):
        onnx_flops(str(path), (1, 3, 8))


def test_tesseract_lstm_params_read_from_the_component_table(tmp_path: Path) -> None:
    offsets = [-1] * 24
    offsets[17], offsets[18] = 200, 1200
    path = tmp_path / "x.traineddata"
    path.write_bytes(struct.pack("<i", 24) + struct.pack("<24q", *offsets) + bytes(1300))
    assert tesseract_lstm_params(path) == 1000


def test_rapidocr_drops_lines_found_on_coloured_objects() -> None:
    from modules.backends.ocr import _coloured

    image = np.full((40, 60, 3), 200, np.uint8)
    image[5:15, 5:30] = 40  # grey ink on a grey panel: text
    image[20:35, 30:50] = (200, 45, 45)  # a red shape
    assert not _coloured(image, [[4, 4], [31, 4], [31, 16], [4, 16]])
    assert _coloured(image, [[30, 20], [50, 20], [50, 35], [30, 35]])
    assert not _coloured(image, [[70, 70], [80, 70], [80, 80], [70, 80]])  # outside: nothing to judge


def test_tesseract_reads_a_group_in_one_process_as_it_reads_each_line_alone(monkeypatch) -> None:
    """Starting Tesseract and loading its model cost several times what reading a line does:
    a group's lines go to one process, with the answers and costs of reading each alone; when
    that process fails, each line is read alone."""
    available, how = ENGINES["tesseract"]
    if not available:
        pytest.skip(f"tesseract is not installed: {how}")
    import subprocess

    backend = _registry("tesseract").get("ocr-tesseract")
    signs = [("STOP", "easy"), ("BANANA", "medium"), ("EXIT", "hard"), ("4", "easy"), (None, "easy"),
             ("LEMON", "medium"), ("TAXI", "hard"), ("PARK", "easy")]
    items = [render_item(seed, sign=word, difficulty=d) for seed, (word, d) in enumerate(signs)]
    calls = [Call("read_text", it.image, ()) for it in items]
    calls.append(Call("read_text", np.zeros((0, 5, 3), np.uint8), ()))  # nothing to read
    alone = [backend.infer([c])[0] for c in calls]
    assert sum(bool(o.value) for o in alone) >= 4 and alone[4].value == "" and alone[-1].value == ""
    real = subprocess.run
    sources: list[str] = []

    def counted(args, **kwargs):
        sources.append(args[1])
        return real(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counted)
    together = backend.infer(calls)
    assert [(o.value, o.usage) for o in together] == [(o.value, o.usage) for o in alone]
    assert len(sources) == 1 and sources[0].endswith("lines.txt")

    def refused(args, **kwargs):  # the list file fails: every line is read alone
        sources.append(args[1])
        if args[1] != "stdin":
            return subprocess.CompletedProcess(args, 1, b"", b"refused")
        return real(args, **kwargs)

    sources.clear()
    monkeypatch.setattr(subprocess, "run", refused)
    again = backend.infer(calls)
    assert [(o.value, o.usage) for o in again] == [(o.value, o.usage) for o in alone]
    assert sources[0].endswith("lines.txt") and sources[1:] == ["stdin"] * (len(sources) - 1) and len(sources) > 2
