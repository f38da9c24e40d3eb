"""Questions for foundation models, and their free-text answers read back into runtime types.

Shared by the ``transformers`` and ``openai`` backend kinds. A reply that cannot be read
raises ValueError naming the function and the text; the backends turn it into that one
call's ``CallFailure``, which fails its item, not the batch.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import numpy as np

from modules.backends.base import Box, Call, pixels

_NUMBER_WORDS = {w: n for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
_YES = frozenset({"yes", "true", "y", "yeah", "correct"})
_NO = frozenset({"no", "false", "n", "none", "not"})
_BOX = re.compile(r"\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*"
                  r"(-?\d+(?:\.\d+)?)\s*\]")


def plural(name: str) -> str:
    return name if name.endswith("s") else f"{name}s"


def question_for(call: Call) -> str:
    """The question a chat or VQA model is asked for one generic-function call."""
    name = call.args[0] if call.args else ""
    if call.function == "exists":
        return f"Is there a {name} in the image? Answer yes or no."
    if call.function == "count":
        return f"How many {plural(name)} are in the image? Answer with a number."
    if call.function == "verify_property":
        return f"Is the {name} in the image {call.args[1]}? Answer yes or no."
    if call.function == "find":
        h, w = call.image.shape[:2] if call.image is not None else (0, 0)
        return (f"Find every {name} in the image ({w}x{h} pixels). Answer with a JSON list of "
                "boxes [x0, y0, x1, y1] in pixels, [] if there is none.")
    if call.function == "read_text":
        return "What text is written in the image? Answer with the text only, or none."
    return name  # query / llm_query: the program's own question


def short_question_for(call: Call) -> str:
    """A short VQA-style question (no answer instructions) for classifier VQA models."""
    name = call.args[0] if call.args else ""
    if call.function == "exists":
        return f"Is there a {name}?"
    if call.function == "count":
        return f"How many {plural(name)} are there?"
    if call.function == "verify_property":
        return f"Is the {name} {call.args[1]}?"
    return name


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def parse_yes_no(text: str, function: str = "exists") -> bool:
    """The first yes/no word of a reply."""
    for word in _words(text):
        if word in _YES:
            return True
        if word in _NO:
            return False
    raise ValueError(f"{function}(): cannot read yes or no from the model's reply {text[:120]!r}")


def parse_count(text: str) -> int:
    """The first number (digits or a word up to twelve) of a reply."""
    for word in _words(text):
        if word.isdigit():
            return int(word)
        if word in _NUMBER_WORDS:
            return _NUMBER_WORDS[word]
    raise ValueError(f"count(): cannot read a number from the model's reply {text[:120]!r}")


def parse_short(text: str) -> str:
    """A short answer: the first line, lower case, without surrounding punctuation."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.strip().strip(".!\"'` ").lower()


def clip_box(box: tuple[float, float, float, float], width: int, height: int) -> Box | None:
    """A box rounded to ints and clipped to the image; None when nothing of it is left."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = sorted((min(max(x0, 0), width), min(max(x1, 0), width)))
    y0, y1 = sorted((min(max(y0, 0), height), min(max(y1, 0), height)))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def parse_boxes(text: str, width: int, height: int) -> list[Box]:
    """Every ``[x0, y0, x1, y1]`` in a reply (plain lists or Qwen-style ``bbox_2d``), clipped."""
    boxes = [clip_box((float(x0), float(y0), float(x1), float(y1)), width, height)
             for x0, y0, x1, y1 in _BOX.findall(text)]
    if not boxes and "[" not in text and not any(w in _NO for w in _words(text)):
        raise ValueError(f"find(): cannot read boxes from the model's reply {text[:120]!r}")
    return [b for b in boxes if b is not None]


def parse_answer(call: Call, text: str) -> Any:
    """A model's reply to ``question_for(call)`` as the function's return type."""
    if call.function in ("exists", "verify_property"):
        return parse_yes_no(text, call.function)
    if call.function == "count":
        return parse_count(text)
    if call.function == "find":
        h, w = pixels(call).shape[:2]
        return parse_boxes(text, int(w), int(h))
    if call.function == "query":
        return parse_short(text)
    return text.strip()


def to_pil(image: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(image), "RGB")


def png_data_url(image: np.ndarray) -> str:
    """The image as a ``data:image/png;base64,...`` URL (for OpenAI-style image parts)."""
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
