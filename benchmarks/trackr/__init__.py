"""Track R: real pretrained models on real photos that ship in packages (a smoke test).

``python -m benchmarks.trackr`` runs the hand-written questions of ``truth.yaml`` through the
runtime (programs, executor, real backends) once per backend of each ladder and prints every
answer, whether it is right, and the measured cost per call. Tens of questions: it shows that
the real models load offline and answer sensibly, and what each costs; it is no accuracy claim.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

TRUTH = Path(__file__).parent / "truth.yaml"
DARKNET = Path("/usr/share/darknet/data")
PACKAGE_DIRS = {"skimage": ("skimage", "data"), "sklearn": ("sklearn", "datasets/images")}

#: The Track R catalog: each ladder cheapest first. Classes and facts live in modules/weights.
CATALOG: list[dict[str, Any]] = [
    {"name": "mnv2-128", "kind": "mobilenet", "functions": ["query"], "input_size": 128,
     "description": "MobileNetV2 ImageNet weights, 128 px input"},
    {"name": "mnv2-224", "kind": "mobilenet", "functions": ["query"], "input_size": 224,
     "description": "MobileNetV2 ImageNet weights, 224 px input"},
    {"name": "ocr-tess", "kind": "ocr", "engine": "tesseract", "functions": ["read_text"]},
    {"name": "ocr-dddd", "kind": "ocr", "engine": "ddddocr", "functions": ["read_text"]},
    {"name": "ocr-rapid", "kind": "ocr", "engine": "rapidocr", "functions": ["read_text"]},
    {"name": "kbr-overlap", "kind": "fact_table", "functions": ["llm_query"], "facts": "trackr_facts.json",
     "matcher": "token_overlap"},
    {"name": "kbr-minilm", "kind": "text_encoder", "functions": ["llm_query"], "facts": "trackr_facts.json"},
]
LADDERS: dict[str, tuple[str, list[str]]] = {
    "classify": ("query", ["mnv2-128", "mnv2-224"]),
    "ocr": ("read_text", ["ocr-tess", "ocr-dddd", "ocr-rapid"]),
    "knowledge": ("llm_query", ["kbr-overlap", "kbr-minilm"]),
}


def photo_path(source: str) -> Path:
    """``skimage:x.png`` / ``sklearn:x.jpg`` / ``darknet:x.jpg`` to a file path.

    Raises:
        FileNotFoundError: the package (or Debian's darknet) is not installed; says which.
    """
    where, _, name = source.partition(":")
    if where == "darknet":
        path = DARKNET / name
        hint = "apt-get install -y darknet"
    elif where in PACKAGE_DIRS:
        module, sub = PACKAGE_DIRS[where]
        spec = importlib.util.find_spec(module)  # locate only: importing sklearn/skimage is slow
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"{source}: python package {module} is not installed (see README)")
        path = Path(spec.origin).parent / sub / name
        hint = f"reinstall {module}"
    else:
        raise ValueError(f"{source}: unknown photo source {where!r}; valid: skimage, sklearn, darknet")
    if not path.exists():
        raise FileNotFoundError(f"{source}: {path} is missing ({hint})")
    return path


def load_photo(source: str) -> np.ndarray:
    with Image.open(photo_path(source)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_questions(path: Path = TRUTH) -> list[dict[str, Any]]:
    questions: list[dict[str, Any]] = yaml.safe_load(path.read_text())["questions"]
    return questions


def program_for(q: dict[str, Any]) -> str:
    """The question's program in the runtime's language."""
    if q["kind"] == "classify":
        return 'def execute_command(image):\n    return query(image, "what is this?")\n'
    if q["kind"] == "ocr":
        return (f'def execute_command(image):\n    if "{q["word"]}" in read_text(image):\n'
                '        return "yes"\n    return "no"\n')
    ask = q["ask"].replace("{}", "{label}")
    return ('def execute_command(image):\n    label = query(image, "what is this?")\n'
            f'    return llm_query(f"{ask}")\n')


def accepted(answer: Any, accept: list[str], classes: list[str]) -> bool:
    """Is ``answer`` one of ``accept`` (``imagenet:A-B`` accepts those class indices)?"""
    if not isinstance(answer, str):
        return False
    for a in accept:
        if a.startswith("imagenet:"):
            lo, hi = (int(v) for v in a.split(":")[1].split("-"))
            if answer in classes[lo:hi + 1]:
                return True
        elif answer.strip().lower() == a.lower():
            return True
    return False


def export_photos(folder: Path, path: Path = TRUTH) -> list[Path]:
    """Copy every distinct Track R photo that is installed into ``folder/<source>/<file>``
    (``skimage/chelsea.png``, ...): a folder of real photos for ``fmp stream add``.

    Photos whose package is missing (Debian's darknet, say) are left out.

    Returns:
        The files written, sorted.
    """
    written = []
    for source in sorted({q["photo"] for q in load_questions(path)}):
        try:
            photo = photo_path(source)
        except FileNotFoundError:
            continue
        where, _, name = source.partition(":")
        target = folder / where / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(photo.read_bytes())
        written.append(target)
    return sorted(written)
