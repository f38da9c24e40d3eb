"""Small torch vision models (segmentation detector, attribute classifier, monolithic VQA).

Kind ``torch_vision``: the spec names an architecture in ``ARCHITECTURES``, its width and
input size, and a state_dict file under ``modules/weights/``. Torch is imported here only;
the registry imports this module lazily. Architectures with an answer vocabulary
(``mono_open``) read it from a JSON file next to the weights (``<weights stem>.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modules.backends.base import Backend, Box, Call, Output, pixels
from modules.backends.facts import normalise
from modules.catalog import WEIGHTS_DIR, TorchVisionSpec
from modules.vocab import COLOURS, SHAPES  # detector class 1 + SHAPES.index(shape)

ANY_SHAPE = ("object", "shape")
Q_BUCKETS = 64
CHUNK = 32  # calls per forward pass
CANVAS = 128  # scene size the detectors were trained at (benchmarks.scenes.SIZE)
MIN_AREA_FRAC = 1.5 / 1024  # components smaller than this fraction of the input are noise
SIGN_CLASSES = 29  # OpenVQA's auxiliary sign head: no sign + benchmarks.signs.SIGN_WORDS (28)

log = logging.getLogger(__name__)


def conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3x3 conv + batch norm + ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.25


class Architecture(nn.Module):
    """A model family of ``ARCHITECTURES``: the generic functions it can serve."""

    functions: ClassVar[frozenset[str]]


class SegDet(Architecture):
    """Fully-convolutional segmenter: per-pixel logits over background + 3 shapes."""

    functions: ClassVar[frozenset[str]] = frozenset({"find", "exists", "count"})

    def __init__(self, width: int) -> None:
        super().__init__()
        w = width
        self.stem = conv(3, w)
        self.down1, self.mid1 = conv(w, 2 * w, 2), conv(2 * w, 2 * w)
        self.down2, self.ctx = conv(2 * w, 2 * w, 2), conv(2 * w, 2 * w, dilation=2)
        self.fuse = conv(4 * w, w)
        self.head = nn.Conv2d(2 * w, 1 + len(SHAPES), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(_normalise(x))
        h = self.mid1(self.down1(s))
        c = self.ctx(self.down2(h))
        h = self.fuse(torch.cat([h, F.interpolate(c, size=h.shape[-2:], mode="nearest")], 1))
        h = F.interpolate(h, size=s.shape[-2:], mode="nearest")
        logits: torch.Tensor = self.head(torch.cat([s, h], 1))
        return logits


class AttrNet(Architecture):
    """Crop classifier with a colour head and a shape head."""

    functions: ClassVar[frozenset[str]] = frozenset({"verify_property", "query"})

    def __init__(self, width: int) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(conv(3, w), conv(w, 2 * w, 2), conv(2 * w, 2 * w),
                                  conv(2 * w, 4 * w, 2))
        self.colour = nn.Linear(8 * w, len(COLOURS))
        self.shape = nn.Linear(8 * w, len(SHAPES))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(_normalise(x))
        f = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return self.colour(f), self.shape(f)


class MonoVQA(Architecture):
    """Monolithic image+question model: wide CNN, FiLM by a hashed bag of words, yes/no logit.

    ``aux`` exposes per-pixel shape/colour logits (stride 4) used only as an auxiliary
    training loss; inference never computes them.
    """

    functions: ClassVar[frozenset[str]] = frozenset({"query"})

    def __init__(self, width: int) -> None:
        super().__init__()
        w = width
        self.stem, self.s1 = conv(5, w), conv(w, w, 2)  # +2 coordinate channels for relations
        self.s2, self.s3 = conv(w, 2 * w), conv(2 * w, 2 * w, 2)
        self.s4, self.s5, self.s6 = conv(2 * w + 2, 2 * w), conv(2 * w, 4 * w, 2), conv(4 * w, 4 * w)
        self.aux = nn.Conv2d(2 * w, 1 + len(SHAPES) + 1 + len(COLOURS), 1)
        self.film = nn.Linear(Q_BUCKETS, 2 * (2 * w + 4 * w))
        self.out = nn.Sequential(nn.Linear(8 * w + Q_BUCKETS, 2 * w), nn.ReLU(), nn.Linear(2 * w, 1))
        self.w = w

    def forward(self, x: torch.Tensor, q: torch.Tensor, aux: bool = False) -> Any:
        h = self.trunk(x)
        logit = self.head(h, q)
        return (logit, self.aux(h)) if aux else logit

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Question-independent features at stride 4 (most of the FLOPs)."""
        h: torch.Tensor = self.s3(self.s2(self.s1(self.stem(_with_coords(_normalise(x))))))
        return h

    def head(self, h: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Question-conditioned (FiLM) layers and the yes/no logit."""
        g1, b1, g2, b2 = torch.split(self.film(q), [2 * self.w, 2 * self.w, 4 * self.w, 4 * self.w], 1)
        h = _with_coords(h * (1 + g1[:, :, None, None]) + b1[:, :, None, None])
        h = self.s6(self.s5(self.s4(h)) * (1 + g2[:, :, None, None]) + b2[:, :, None, None])
        logit: torch.Tensor = self.out(torch.cat([h.mean((2, 3)), h.amax((2, 3)), q], 1)).squeeze(1)
        return logit


class OpenVQA(Architecture):
    """Monolithic image+question model with an answer-vocabulary head (open-form and yes/no).

    Same idea as ``MonoVQA`` (CNN, FiLM by a hashed bag of words, coordinate channels) but
    bigger, and the output is logits over a fixed answer vocabulary. The question-independent
    ``trunk`` (stride 8) holds almost all FLOPs; the ``head`` (FiLM, one 3x3 and one 1x1
    conv at stride 8, pooled, MLP) is cheap, so training can ask many questions per trunk
    pass. ``aux`` (per-pixel shape/colour, stride 4) and ``sign`` (the sign's word from
    pooled features) are auxiliary training losses; inference never computes them.
    """

    functions: ClassVar[frozenset[str]] = frozenset({"query"})
    uses_vocabulary: ClassVar[bool] = True

    def __init__(self, width: int, n_answers: int = 1, n_signs: int = SIGN_CLASSES) -> None:
        super().__init__()
        w, c = width, 4 * width
        self.stem, self.s0 = conv(5, w), conv(w, w)  # +2 coordinate channels
        self.s1, self.s1b = conv(w, 2 * w, 2), conv(2 * w, 2 * w)
        self.s2, self.s2b, self.s2c = conv(2 * w, c, 2), conv(c + 2, c), conv(c, c)
        self.s3, self.s3b = conv(c, c, 2), conv(c, c, dilation=2)
        self.aux = nn.Conv2d(c, 1 + len(SHAPES) + 1 + len(COLOURS), 1)
        self.sign = nn.Linear(2 * c, n_signs)
        self.film = nn.Linear(Q_BUCKETS, 4 * c)
        self.h1, self.h2 = conv(c + 2, c), nn.Conv2d(c, c, 1)
        self.out = nn.Sequential(nn.Linear(2 * c + Q_BUCKETS, c), nn.ReLU(), nn.Linear(c, n_answers))
        self.c = c

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)[0], q)

    def trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(stride-8 features for the head, stride-4 features for the auxiliary loss)."""
        h = self.s1b(self.s1(self.s0(self.stem(_with_coords(_normalise(x))))))
        mid = self.s2c(self.s2b(_with_coords(self.s2(h))))
        return self.s3b(self.s3(mid)), mid

    def head(self, h: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Question-conditioned layers: answer logits (N, n_answers) for features ``h``."""
        c = self.c
        g1, b1, g2, b2 = torch.split(self.film(q), [c, c, c, c], 1)
        h = self.h1(_with_coords(h * (1 + g1[:, :, None, None]) + b1[:, :, None, None]))
        h = F.relu(self.h2(h) * (1 + g2[:, :, None, None]) + b2[:, :, None, None])
        logits: torch.Tensor = self.out(torch.cat([h.mean((2, 3)), h.amax((2, 3)), q], 1))
        return logits

    def sign_logits(self, h: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.sign(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))
        return logits


class AnswerVocabulary:
    """Answer strings and, per known (normalised) question, the answers it was trained with.

    Decoding picks the best answer among the question's trained answers (``["yes", "no"]``
    for a yes/no benchmark question, so a binary question is always answered yes or no);
    a question the model never saw decodes over the whole vocabulary.

    ``thresholds``: per calibrated yes/no question, a decision threshold on the model's
    yes-probability (``yes_probability``): it answers "yes" only when that probability is
    above the threshold (1.0: never). ``python -m benchmarks.calibrate`` chooses them on a
    validation split for the streams' positive rate and stores them in the vocabulary file.
    """

    def __init__(self, answers: list[str], answer_sets: dict[str, list[str]],
                 thresholds: dict[str, float] | None = None) -> None:
        self.answers = list(answers)
        index = {a: i for i, a in enumerate(self.answers)}
        self.sets = {normalise(q): [index[a] for a in allowed] for q, allowed in answer_sets.items()}
        self.thresholds = {normalise(q): float(t) for q, t in (thresholds or {}).items()}

    @classmethod
    def load(cls, path: Any, weights: Path | None = None) -> AnswerVocabulary:
        """Read a vocabulary file; its ``calibration`` thresholds count only when they were
        chosen for ``weights`` (the digest they record), else they are dropped with a warning."""
        data = json.loads(Path(path).read_text())
        calibration = data.get("calibration") or {}
        thresholds = calibration.get("thresholds") or {}
        if thresholds and weights is not None and calibration.get("weights_sha256") != file_sha256(weights):
            log.warning("%s: calibration was chosen for other weights than %s; ignored "
                        "(run python -m benchmarks.calibrate)", path, weights)
            thresholds = {}
        return cls(data["answers"], data["answer_sets"], thresholds)

    def allowed(self, question: str) -> list[int]:
        return self.sets.get(normalise(question), list(range(len(self.answers))))

    def mask(self, questions: list[str]) -> torch.Tensor:
        """(N, V) bool: which answers each question may decode to."""
        m = torch.zeros(len(questions), len(self.answers), dtype=torch.bool)
        for i, q in enumerate(questions):
            m[i, self.allowed(q)] = True
        return m

    def decode(self, logits: torch.Tensor, questions: list[str]) -> list[tuple[Any, float | None]]:
        """Per question: the best answer it may decode to, and that answer's probability."""
        allowed = logits.masked_fill(~self.mask(questions), float("-inf"))
        best = allowed.argmax(1)
        probs = allowed.softmax(1).amax(1)
        out: list[tuple[Any, float | None]] = [
            (self.answers[i], p) for i, p in zip(best.tolist(), probs.tolist(), strict=True)]
        for k, question in enumerate(questions):
            threshold = self.thresholds.get(normalise(question))
            if threshold is not None:
                p_yes = self.yes_probability(logits[k])
                out[k] = ("yes", p_yes) if p_yes > threshold else ("no", 1.0 - p_yes)
        return out

    def yes_probability(self, logits: torch.Tensor) -> float:
        """P(yes) among yes and no, from one question's answer logits (float64 arithmetic)."""
        margin = float(logits[self.answers.index("yes")]) - float(logits[self.answers.index("no")])
        return 1.0 / (1.0 + math.exp(-margin)) if margin > -700 else 0.0


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file (ties a calibration to the weights it was chosen for)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _with_coords(x: torch.Tensor) -> torch.Tensor:
    """Append x/y coordinate channels in [-1, 1] (relations like 'left of' need position)."""
    n, _, hgt, wid = x.shape
    ys = torch.linspace(-1, 1, hgt, device=x.device).view(1, 1, hgt, 1).expand(n, 1, hgt, wid)
    xs = torch.linspace(-1, 1, wid, device=x.device).view(1, 1, 1, wid).expand(n, 1, hgt, wid)
    return torch.cat([x, xs, ys], 1)


ARCHITECTURES: dict[str, type[Architecture]] = {"segdet": SegDet, "attr": AttrNet, "mono": MonoVQA,
                                                "mono_open": OpenVQA}


def encode_question(question: str) -> torch.Tensor:
    """Hashed bag of lower-cased words (``Q_BUCKETS`` counts), stable across processes."""
    v = torch.zeros(Q_BUCKETS)
    for tok in "".join(c if c.isalnum() else " " for c in question.lower()).split():
        v[zlib.crc32(tok.encode()) % Q_BUCKETS] += 1.0
    return v


def to_batch(images: list[np.ndarray], size: int) -> torch.Tensor:
    """Stack HxWx3 uint8 images as (N,3,size,size) floats in [0,1] (antialiased bilinear)."""
    out = []
    for img in images:
        # a copy: crops are read-only views of the decoded image
        t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(t)
    return torch.cat(out, 0)


def components(classes: np.ndarray, min_area: int) -> list[tuple[int, Box]]:
    """4-connected components of each non-zero class: (class, (x0, y0, x1, y1)) in map pixels.

    Min-label propagation with pointer jumping, vectorised in numpy (no scipy needed).
    """
    h, w = classes.shape
    fg = classes > 0
    if not fg.any():
        return []
    idx = np.arange(h * w).reshape(h, w)
    big = h * w
    lab = np.where(fg, idx, big)
    same_r = fg[:, 1:] & (classes[:, 1:] == classes[:, :-1])
    same_d = fg[1:, :] & (classes[1:, :] == classes[:-1, :])
    while True:
        new = lab.copy()
        np.minimum(new[:, :-1], np.where(same_r, lab[:, 1:], big), out=new[:, :-1])
        np.minimum(new[:, 1:], np.where(same_r, lab[:, :-1], big), out=new[:, 1:])
        np.minimum(new[:-1, :], np.where(same_d, lab[1:, :], big), out=new[:-1, :])
        np.minimum(new[1:, :], np.where(same_d, lab[:-1, :], big), out=new[1:, :])
        flat = new.ravel()
        flat[fg.ravel()] = flat[flat[fg.ravel()]]  # pointer jumping: follow label to its label
        if np.array_equal(new, lab):
            break
        lab = new
    ys, xs = np.nonzero(fg)
    roots, inv, counts = np.unique(lab[ys, xs], return_inverse=True, return_counts=True)
    x0 = np.full(len(roots), w)
    y0 = np.full(len(roots), h)
    x1 = np.zeros(len(roots), int)
    y1 = np.zeros(len(roots), int)
    np.minimum.at(x0, inv, xs)
    np.minimum.at(y0, inv, ys)
    np.maximum.at(x1, inv, xs + 1)
    np.maximum.at(y1, inv, ys + 1)
    cls = classes.ravel()[roots]
    return [(int(cls[i]), (int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i])))
            for i in np.argsort(roots, kind="stable") if counts[i] >= min_area]


def _scale_box(box: Box, size: int, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    sx, sy = width / size, height / size
    return (int(np.floor(x0 * sx)), int(np.floor(y0 * sy)),
            min(width, int(np.ceil(x1 * sx))), min(height, int(np.ceil(y1 * sy))))


def _canvas(image: np.ndarray) -> np.ndarray:
    """Pad a small crop (bottom/right) to the scene scale the detectors were trained at.

    Upscaling a crop would make objects bigger than any seen in training; padding with the
    crop's median border colour (background-like) keeps their size.
    """
    h, w = image.shape[:2]
    if h >= CANVAS and w >= CANVAS:
        return image
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    out = np.empty((max(h, CANVAS), max(w, CANVAS), 3), dtype=np.uint8)
    out[:] = np.median(border, axis=0).astype(np.uint8)
    out[:h, :w] = image
    return out


def _clip(box: Box, width: int, height: int) -> Box:
    return (min(box[0], width), min(box[1], height), min(box[2], width), min(box[3], height))


def _shape_filter(name: str) -> set[int]:
    if name in ANY_SHAPE:
        return {1, 2, 3}
    if name in SHAPES:
        return {1 + SHAPES.index(name)}
    raise ValueError(f"find: unknown object name {name!r}; known: {list(SHAPES + ANY_SHAPE)}")


def _empty(image: np.ndarray | None) -> bool:
    return image is None or image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0


_EMPTY_ANSWER: dict[str, Any] = {"exists": False, "count": 0, "verify_property": False}


class TorchVisionBackend(Backend):
    """Serves the functions of one architecture from a trained state_dict."""

    kind = "torch_vision"
    spec: TorchVisionSpec

    def setup(self) -> None:
        if getattr(self, "model", None) is not None:
            return
        try:
            arch = ARCHITECTURES[self.spec.architecture]
        except KeyError:
            raise ValueError(f"backend {self.name!r}: unknown architecture {self.spec.architecture!r}; "
                             f"valid: {sorted(ARCHITECTURES)}") from None
        extra = sorted(set(self.spec.functions) - arch.functions)
        if extra:
            raise ValueError(f"backend {self.name!r}: architecture {self.spec.architecture!r} cannot "
                             f"serve {extra}; it serves {sorted(arch.functions)}")
        path = WEIGHTS_DIR / self.spec.weights
        self.vocab: AnswerVocabulary | None = None
        if getattr(arch, "uses_vocabulary", False):
            vocab_path = path.with_suffix(".json")
            try:
                self.vocab = AnswerVocabulary.load(vocab_path, weights=path)
            except FileNotFoundError:
                raise FileNotFoundError(f"backend {self.name!r}: answer vocabulary {vocab_path} missing; "
                                        "run `make weights` (python -m benchmarks.train)") from None
            model = arch(width=self.spec.width, n_answers=len(self.vocab.answers))
        else:
            model = arch(width=self.spec.width)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"backend {self.name!r}: weights {path} missing; "
                                    "run `make weights` (python -m benchmarks.train)") from None
        model.load_state_dict(state)  # copy_ converts float16 storage to float32
        self.model = model.float().eval()
        self._flops: dict[tuple[int, ...], float] = {}

    def infer(self, calls: list[Call]) -> list[Output]:
        out: list[Any] = [None] * len(calls)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, call in enumerate(calls):
            if call.function not in self.spec.functions:
                raise ValueError(f"backend {self.name!r} does not serve {call.function!r}; "
                                 f"it serves {self.spec.functions}")
            groups[call.function].append(i)
        for function, idxs in groups.items():
            answers = self._answer(function, [calls[i] for i in idxs])
            for i, a in zip(idxs, answers, strict=True):
                out[i] = a
        if not calls:
            return []
        flops, params = self.flops(calls[0]), self.params()  # the same forward pass for every call
        return [Output(value, self.declared_usage(flops, params, confidence=confidence))
                for value, confidence in out]

    def _answer(self, function: str, calls: list[Call]) -> list[tuple[Any, float | None]]:
        """(answer, the model's confidence in it; None for empty patches)."""
        for c in calls:
            self._check_args(c)
        live = [i for i, c in enumerate(calls) if not _empty(c.image)]
        answers: list[tuple[Any, float | None]] = [(self._empty_answer(c), None) for c in calls]
        for start in range(0, len(live), CHUNK):  # bounded memory for big batches
            part = [calls[i] for i in live[start:start + CHUNK]]
            images = [_canvas(pixels(c)) if isinstance(self.model, SegDet) else pixels(c) for c in part]
            batch = to_batch(images, self.spec.input_size)
            results: list[tuple[Any, float | None]]
            with torch.inference_mode():
                if isinstance(self.model, SegDet):
                    results = self._detect(batch, part)
                elif isinstance(self.model, AttrNet):
                    results = self._attributes(batch, part)
                elif isinstance(self.model, OpenVQA):
                    assert self.vocab is not None  # setup loads one for every OpenVQA
                    q = torch.stack([encode_question(c.args[0]) for c in part])
                    results = self.vocab.decode(self.model(batch, q), [c.args[0] for c in part])
                else:
                    q = torch.stack([encode_question(c.args[0]) for c in part])
                    logits = self.model(batch, q)
                    yes = torch.sigmoid(logits).tolist()
                    results = [("yes", p) if v > 0 else ("no", 1.0 - p)
                               for v, p in zip(logits.tolist(), yes, strict=True)]
            for i, r in zip(live[start:start + CHUNK], results, strict=True):
                answers[i] = r
        return answers

    def _check_args(self, call: Call) -> None:
        f, args = call.function, call.args
        if f in ("find", "exists", "count"):
            _shape_filter(args[0] if args else "")
        elif f == "verify_property":
            if len(args) != 2 or args[1] not in COLOURS + SHAPES:
                raise ValueError(f"verify_property: unknown property {args[1:]!r}; valid: "
                                 f"{list(COLOURS + SHAPES)}")
        elif f == "query" and isinstance(self.model, AttrNet):
            if len(args) != 1 or _attr_kind(args[0]) is None:
                raise ValueError(f"query: {self.name} answers 'what colour/shape' questions, "
                                 f"got {args!r}")

    def _empty_answer(self, call: Call) -> Any:
        if call.function == "find":
            return []
        if call.function == "query":
            if isinstance(self.model, OpenVQA):  # nothing to see: "no" if it must say yes/no
                assert self.vocab is not None  # setup loads one for every OpenVQA
                allowed = {self.vocab.answers[i] for i in self.vocab.allowed(call.args[0])}
                return "no" if allowed == {"yes", "no"} else "N/A"
            return "no" if isinstance(self.model, MonoVQA) else "unknown"
        return _EMPTY_ANSWER[call.function]

    def _detect(self, batch: torch.Tensor, calls: list[Call]) -> list[tuple[Any, float | None]]:
        logits = self.model(batch)
        classes = logits.argmax(1).to(torch.int8).numpy()
        probs = logits.softmax(1).numpy()
        size = self.spec.input_size
        min_area = max(1, round(MIN_AREA_FRAC * size * size))
        out: list[tuple[Any, float | None]] = []
        for cmap, prob, call in zip(classes, probs, calls, strict=True):
            keep = _shape_filter(call.args[0])
            h, w = pixels(call).shape[:2]
            ch, cw = max(h, CANVAS), max(w, CANVAS)
            found = [(c, b, _clip(_scale_box(b, size, cw, ch), w, h))
                     for c, b in components(cmap, min_area) if c in keep]
            found = [(c, b, box) for c, b, box in found if box[2] > box[0] and box[3] > box[1]]
            boxes = [box for _, _, box in found]
            confidence = _detection_confidence(call.function, prob[sorted(keep)].sum(0), cmap,
                                               [(c, b) for c, b, _ in found])
            out.append(({"find": boxes, "exists": bool(boxes), "count": len(boxes)}[call.function],
                        confidence))
        return out

    def _attributes(self, batch: torch.Tensor, calls: list[Call]) -> list[tuple[Any, float | None]]:
        colour_logits, shape_logits = self.model(batch)
        colours = [COLOURS[i] for i in colour_logits.argmax(1).tolist()]
        shapes = [SHAPES[i] for i in shape_logits.argmax(1).tolist()]
        colour_probs, shape_probs = colour_logits.softmax(1).tolist(), shape_logits.softmax(1).tolist()
        out: list[tuple[Any, float | None]] = []
        for k, (colour, shape, call) in enumerate(zip(colours, shapes, calls, strict=True)):
            if call.function == "verify_property":
                target = call.args[1]
                if target in COLOURS:
                    answer, p = colour == target, colour_probs[k][COLOURS.index(target)]
                else:
                    answer, p = shape == target, shape_probs[k][SHAPES.index(target)]
                out.append((answer, p if answer else 1.0 - p))
            elif _attr_kind(call.args[0]) == "colour":
                out.append((colour, max(colour_probs[k])))
            else:
                out.append((shape, max(shape_probs[k])))
        return out

    def flops(self, call: Call) -> float:
        """FLOPs of one batch-1 forward at the model's input size (post-processing not counted)."""
        from torch.utils.flop_counter import FlopCounterMode

        s = self.spec.input_size
        key = (1, 3, s, s)
        if key not in self._flops:
            x = torch.zeros(key)
            counter = FlopCounterMode(display=False)
            with counter, torch.inference_mode():
                if isinstance(self.model, (MonoVQA, OpenVQA)):
                    self.model(x, torch.zeros(1, Q_BUCKETS))
                else:
                    self.model(x)
            self._flops[key] = float(counter.get_total_flops())
        return self._flops[key]

    def params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))


def _detection_confidence(function: str, wanted: np.ndarray, classes: np.ndarray,
                          found: list[tuple[int, Box]]) -> float:
    """A detector's confidence in its answer, from the per-pixel class probabilities it
    already computed (the answer itself comes from the arg-max map, unchanged).

    ``wanted``: per map pixel, the probability of a wanted shape; ``found``: the kept
    components (class, box in map pixels). A detection's confidence is the mean probability
    of its class over its pixels; "nothing else is there" is 1 - the highest ``wanted``
    probability outside the detections (a faint or too-small object lowers it). ``exists``
    is as sure as its best detection (or, with none, as sure that nothing is there);
    ``find`` and ``count`` as their least sure part.
    """
    missed = wanted.copy()
    detections = []
    for c, (x0, y0, x1, y1) in found:
        mask = classes[y0:y1, x0:x1] == c
        region = wanted[y0:y1, x0:x1]
        detections.append(float(region[mask].mean()) if mask.any() else float(region.max()))
        missed[y0:y1, x0:x1] = 0.0
    absent = 1.0 - float(missed.max()) if missed.size else 1.0
    if function == "exists":
        return max(detections) if detections else absent
    return min([absent, *detections])


def _attr_kind(question: str) -> str | None:
    q = question.lower()
    if "colour" in q or "color" in q:
        return "colour"
    if "shape" in q:
        return "shape"
    return None
