"""Real pretrained OCR models reading sign text: ``read_text(patch) -> str``.

Kind ``ocr``; the spec's ``engine`` picks the model, all of them installed offline:

* ``ddddocr`` — the ddddocr package's default CTC line recogniser (``common_old.onnx``, run through
  onnxruntime here so that decoding is restricted to letters and digits);
* ``tesseract`` — Debian's ``tesseract-ocr`` binary (LSTM engine, ``--psm 7`` single line; a group's lines are
  the pages of one process)
* ``pprec`` — RapidOCR's PP-OCRv4 line recogniser alone (``ch_PP-OCRv4_rec_infer.onnx`` from
  ``rapidocr-onnxruntime``, run through RapidOCR's own recogniser wrapper), without its
  detector and classifier;
* ``rapidocr`` — RapidOCR's PP-OCRv4 pipeline (``rapidocr-onnxruntime``): a learned text
  detector (DB), an orientation classifier and a CRNN recogniser over the whole patch.

ddddocr, Tesseract and pprec read one line; they are given the line that ``localise_text`` (a
classic morphological text localiser, no learning) finds in the patch. RapidOCR finds text
itself; a line it finds on a coloured object (a triangle read as "A") is dropped. Answers are
normalised: upper case, letters and digits, words joined by one space; "" when nothing is read.

Cost is measured per call: ONNX graph FLOPs (``onnx_cost``) for the input shapes each call
actually ran at; for Tesseract, which is no ONNX graph, 2 x LSTM weights x line columns at
Tesseract's 36 px line height (one full LSTM step per column), plus the localiser's
``LOCALISER_OPS_PER_PIXEL`` per patch pixel. Parameters: ONNX weights, Tesseract's LSTM
weights (int8, one byte each, read from the traineddata's component table).
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modules.backends.base import Backend, Call, Output
from modules.backends.onnx_cost import onnx_flops, onnx_params

if TYPE_CHECKING:
    from modules.catalog import OCRSpec

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LOCALISER_OPS_PER_PIXEL = 64  # black-hat (2 x 7x7 separable), masks, threshold, dilation, labels
SAT_MAX = 100  # text ink is grey: pixels more saturated than this are coloured objects
STROKE_MIN = 26  # black-hat response (grey levels) that counts as a dark stroke
COLOURED_MAX = 0.25  # share of saturated pixels above which a line RapidOCR found is an object
TESSDATA = Path("/usr/share/tesseract-ocr/5/tessdata/eng.traineddata")
TESS_LINE_HEIGHT = 36
TESSDATA_LSTM = 17  # index of the LSTM component in a traineddata file


def normalise_text(text: str) -> str:
    """Upper case, runs of letters/digits as words, one space between words."""
    return " ".join(re.findall(r"[A-Z0-9]+", text.upper()))


def localise_text(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """The most text-like box (x0, y0, x1, y1) of dark achromatic strokes, or None.

    Black-hat morphology keeps thin dark strokes; saturated (coloured) pixels are dropped;
    strokes are merged into words by a small dilation; the biggest component of word-like
    size and density wins.
    """
    import cv2

    if image.ndim != 3 or min(image.shape[:2]) < 8:
        return None
    grey = cv2.GaussianBlur(image.astype(np.float32).mean(2), (3, 3), 0)  # tames sensor noise
    sat = image.max(2).astype(np.float32) - image.min(2)
    blackhat = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (7, 7)))
    mask = ((blackhat * (sat < SAT_MAX)) > STROKE_MIN).astype(np.uint8)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 3)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    best: tuple[float, tuple[int, int, int, int]] | None = None
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if h < 7 or w < 7 or h > 40 or w < 0.6 * h:  # words are wide; clutter strokes are thin
            continue
        density = area / (w * h)
        score = area * (1.0 if 0.2 < density < 0.95 else 0.2)
        if best is None or score > best[0]:
            best = (score, (x, y, x + w, y + h))
    return None if best is None else best[1]


def representative_text_image(word: str = "STOP", size: int = 128) -> np.ndarray:
    """A ``size`` x ``size`` RGB patch with one word on a framed light panel (deterministic).

    The representative input for measuring an OCR backend's cost per call: their cost depends
    on content (no text found: only the localiser runs), so a blank image would rank them by
    the localiser alone. Drawn with Pillow's bundled font, like the benchmark's signs.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    x0, y0, x1, y1 = font.getbbox(word)
    w, h = x1 - x0 + 8, y1 - y0 + 8
    image = Image.new("RGB", (size, size), (96, 128, 96))
    draw = ImageDraw.Draw(image)
    left, top = (size - w) // 2, (size - h) // 2
    draw.rectangle([left, top, left + w - 1, top + h - 1], fill=(236, 236, 236), outline=(146, 146, 146))
    draw.text((left + 4 - x0, top + 4 - y0), word, font=font, fill=(20, 20, 20))
    return np.asarray(image, np.uint8).copy()


def _crop(image: np.ndarray, box: tuple[int, int, int, int], pad: int = 1) -> np.ndarray:
    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    return image[max(0, y0 - pad):min(h, y1 + pad), max(0, x0 - pad):min(w, x1 + pad)]


def _package_file(module: str, *parts: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"python package {module!r} is not installed; see README (Track R / OCR)")
    return str(Path(spec.origin).parent.joinpath(*parts))


def tesseract_lstm_params(path: Path = TESSDATA) -> int:
    """Weights of the LSTM component of a traineddata file (int8: one byte per weight)."""
    data = path.read_bytes()
    n = struct.unpack("<i", data[:4])[0]
    offsets = struct.unpack(f"<{n}q", data[4:4 + 8 * n])
    start = offsets[TESSDATA_LSTM]
    later = [o for o in offsets[TESSDATA_LSTM + 1:] if o > start] + [len(data)]
    return int(min(later) - start) if start > 0 else 0


class OCRBackend(Backend):
    """Serves ``read_text`` with one of three real OCR engines."""

    kind = "ocr"
    spec: OCRSpec

    def setup(self) -> None:
        if getattr(self, "_ready", False):
            return
        getattr(self, f"_setup_{self.spec.engine}")()
        self._ready = True

    def _setup_ddddocr(self) -> None:
        import onnxruntime as ort

        self._onnx = _package_file("ddddocr", "common_old.onnx")  # ddddocr's default model
        from ddddocr.models.charset_manager import CharsetManager

        manager = CharsetManager()
        manager.load_default_charset(old=True)  # the charset of common_old.onnx
        charset = manager.get_charset()
        self._charset = charset
        self._allowed = np.array([i == 0 or (c.upper() in ALNUM and len(c) == 1)
                                  for i, c in enumerate(charset)])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(self._onnx, opts, providers=["CPUExecutionProvider"])
        self._params = onnx_params(self._onnx)

    def _setup_tesseract(self) -> None:
        binary = shutil.which("tesseract")
        if binary is None or not TESSDATA.exists():
            raise ValueError(f"backend {self.name!r}: the tesseract binary or {TESSDATA} is missing; "
                             "install Debian's tesseract-ocr (apt-get install -y tesseract-ocr)")
        self._binary = binary
        self._params = tesseract_lstm_params()

    def _setup_rapidocr(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR(intra_op_num_threads=1, print_verbose=False)
        self._shapes: list[tuple[str, tuple[int, ...]]] = []
        self._paths = {}
        for stage in ("text_det", "text_cls", "text_rec"):
            component = getattr(self._engine, stage)
            self._paths[stage] = _package_file(
                "rapidocr_onnxruntime", *self._engine_model(stage).split("/"))
            attr = "session" if stage == "text_rec" else "infer"  # where each stage keeps its session
            setattr(component, attr, _Recorder(getattr(component, attr), stage, self._shapes))
        self._params = sum(onnx_params(p) for p in self._paths.values())

    def _setup_pprec(self) -> None:
        self._setup_rapidocr()  # the same package and wrapper; only its recogniser is run
        self._params = onnx_params(self._paths["text_rec"])

    def _engine_model(self, stage: str) -> str:
        return {"text_det": "models/ch_PP-OCRv4_det_infer.onnx",
                "text_cls": "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                "text_rec": "models/ch_PP-OCRv4_rec_infer.onnx"}[stage]

    def infer(self, calls: list[Call]) -> list[Output]:
        """Each call's text and usage, with the FLOPs measured as it ran."""
        for call in calls:
            if call.function != "read_text":
                raise ValueError(f"backend {self.name!r} serves only read_text, got {call.function!r}")
        params = self.params()
        if self.spec.engine == "tesseract":
            return self._infer_tesseract(calls, params)
        out = []
        for call in calls:
            image = call.image
            if image is None or image.ndim != 3 or 0 in image.shape[:2]:
                out.append(Output("", self.declared_usage(0.0, params)))
                continue
            text, flops = getattr(self, f"_read_{self.spec.engine}")(np.ascontiguousarray(image))
            confidence = self._confidence if text else None
            usage = self.declared_usage(flops, params, confidence=confidence)
            out.append(Output(normalise_text(text), usage))
        return out

    #: The recogniser's score of the text the last ``_read_*`` returned (PP-OCRv4 engines:
    #: mean character probability; RapidOCR: its least sure line), None where the engine has none.
    _confidence: float | None = None

    def _read_ddddocr(self, image: np.ndarray) -> tuple[str, float]:
        local = LOCALISER_OPS_PER_PIXEL * image.shape[0] * image.shape[1]
        box = localise_text(image)
        if box is None:
            return "", local
        from PIL import Image

        line = Image.fromarray(_crop(image, box)).convert("L")
        width = max(8, int(round(line.width * 64 / line.height)))
        x = np.asarray(line.resize((width, 64), Image.Resampling.LANCZOS), np.float32)[None, None] / 255.0
        logits = self._session.run(None, {self._session.get_inputs()[0].name: x})[0]
        logits = logits[:, 0, :] if logits.shape[1] == 1 else logits[0]
        ids = np.where(self._allowed[None, :], logits, -np.inf).argmax(-1)
        chars, prev = [], -1
        for i in ids.tolist():  # CTC: collapse repeats, drop blanks
            if i != prev and i != 0:
                chars.append(self._charset[i])
            prev = i
        return "".join(chars), local + onnx_flops(self._onnx, (1, 1, 64, width))

    def _infer_tesseract(self, calls: list[Call], params: int) -> list[Output]:
        """A group's lines read by one Tesseract process (a page per line): starting the
        binary and loading its model cost several times what reading a line does."""
        lines = [self._tesseract_line(call.image) for call in calls]
        texts = iter(self._tesseract_many([png for png, _ in lines if png is not None]))
        return [Output(normalise_text(next(texts) if png is not None else ""),
                       self.declared_usage(flops, params, confidence=None))
                for png, flops in lines]

    def _tesseract_line(self, image: np.ndarray | None) -> tuple[bytes | None, float]:
        """The PNG of the line Tesseract reads in ``image`` (None: no text found, or no image)
        and the call's FLOPs."""
        if image is None or image.ndim != 3 or 0 in image.shape[:2]:
            return None, 0.0
        image = np.ascontiguousarray(image)
        local = LOCALISER_OPS_PER_PIXEL * image.shape[0] * image.shape[1]
        box = localise_text(image)
        if box is None:
            return None, local
        import cv2

        line = _crop(image, box)
        line = cv2.resize(line, None, fx=self.spec.upscale, fy=self.spec.upscale,
                          interpolation=cv2.INTER_CUBIC)
        ok, png = cv2.imencode(".png", cv2.cvtColor(line, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"backend {self.name!r}: a {line.shape} line could not be encoded as PNG")
        columns = line.shape[1] * TESS_LINE_HEIGHT / line.shape[0]
        return png.tobytes(), local + 2.0 * self._params * columns

    def _tesseract(self, source: str, stdin: bytes | None, timeout_s: float) -> str:
        proc = subprocess.run(
            [self._binary, source, "stdout", "--psm", "7", "-c", f"tessedit_char_whitelist={ALNUM}"],
            input=stdin, capture_output=True, timeout=timeout_s, check=False,
            env={"OMP_THREAD_LIMIT": "1", "PATH": "/usr/bin:/bin"})
        if proc.returncode != 0:
            raise ValueError(f"backend {self.name!r}: tesseract failed: {proc.stderr.decode()[-200:]}")
        return proc.stdout.decode(errors="replace")

    def _tesseract_many(self, pngs: list[bytes]) -> list[str]:
        """The text of each line. Several lines go to one process as the pages of a list file
        (Tesseract separates the pages' text with form feeds; the whitelist keeps them out
        of the text); when that process fails or its pages do not match, each line is read
        alone, so a line Tesseract rejects fails its call only."""
        if len(pngs) > 1:
            with tempfile.TemporaryDirectory(prefix="fmp-tesseract-") as tmp:
                names = []
                for i, png in enumerate(pngs):
                    name = Path(tmp) / f"{i:05d}.png"
                    name.write_bytes(png)
                    names.append(str(name))
                listing = Path(tmp) / "lines.txt"
                listing.write_text("\n".join(names) + "\n")
                try:
                    pages = self._tesseract(str(listing), None, 30.0 + 2.0 * len(pngs)).split("\f")
                except (ValueError, subprocess.TimeoutExpired):
                    pages = []
            if len(pages) == len(pngs):
                return pages
        return [self._tesseract("stdin", png, 30.0) for png in pngs]

    def _read_pprec(self, image: np.ndarray) -> tuple[str, float]:
        local = LOCALISER_OPS_PER_PIXEL * image.shape[0] * image.shape[1]
        box = localise_text(image)
        if box is None:
            return "", local
        line = np.ascontiguousarray(_crop(image, box)[:, :, ::-1])  # RapidOCR's models take BGR
        self._shapes.clear()
        result = self._engine.text_rec([line])
        texts = result[0] if isinstance(result, tuple) else result  # ([(text, score)], elapsed)
        flops = sum(shape[0] * onnx_flops(self._paths[stage], (1, *shape[1:]))
                    for stage, shape in self._shapes)
        self._confidence = _score(texts[0][1]) if texts else None
        return (texts[0][0] if texts else ""), local + flops

    def _read_rapidocr(self, image: np.ndarray) -> tuple[str, float]:
        self._shapes.clear()
        result, _ = self._engine(image)
        result = [r for r in result or [] if not _coloured(image, r[0])]
        texts = [r[1] for r in result]
        flops = sum(shape[0] * onnx_flops(self._paths[stage], (1, *shape[1:]))
                    for stage, shape in self._shapes)
        scores = [_score(r[2]) for r in result]
        self._confidence = min((c for c in scores if c is not None), default=None)
        return " ".join(texts), flops

    def flops(self, call: Call) -> float:
        """FLOPs of one call, measured by running it (cost depends on content); 0 for a call
        this backend does not serve (nothing runs)."""
        if call.function != "read_text":
            return 0.0
        return self.infer([call])[0].usage.flops

    def params(self) -> int:
        return int(self._params)


def _coloured(image: np.ndarray, box: Any) -> bool:
    """Whether a line RapidOCR found is a coloured object rather than text: more than
    ``COLOURED_MAX`` of its box's pixels are saturated beyond ``SAT_MAX``. Sign text is dark grey
    ink on a light grey panel; the whole-patch detector also reads shapes as letters (a
    triangle as "A", a square as "口"), and those are saturated colours."""
    pts = np.asarray(box, dtype=np.float64).reshape(-1, 2)
    h, w = image.shape[:2]
    x0, y0 = (max(0, int(np.floor(v))) for v in pts.min(0))
    x1, y1 = min(w, int(np.ceil(pts[:, 0].max()))), min(h, int(np.ceil(pts[:, 1].max())))
    region = image[y0:y1, x0:x1].astype(np.int16)
    if region.size == 0:
        return False
    sat = region.max(2) - region.min(2)
    return bool((sat > SAT_MAX).mean() > COLOURED_MAX)


def _score(value: Any) -> float | None:
    """A recogniser's score as a probability in [0, 1], or None when it is not a number."""
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return min(max(score, 0.0), 1.0) if np.isfinite(score) else None


class _Recorder:
    """Wraps a RapidOCR stage's ONNX session call and records every input shape it runs."""

    def __init__(self, inner: Any, stage: str, shapes: list[tuple[str, tuple[int, ...]]]) -> None:
        self.inner, self.stage, self.shapes = inner, stage, shapes

    def __call__(self, x: np.ndarray) -> Any:
        self.shapes.append((self.stage, tuple(int(v) for v in x.shape)))
        return self.inner(x)

    def __getattr__(self, name: str) -> Any:  # have_key(), get_character_list(), ...
        return getattr(self.inner, name)
