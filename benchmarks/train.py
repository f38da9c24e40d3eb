"""Train every torch_vision backend of the catalog on procedural scenes: ``python -m benchmarks.train``.

The catalog is ``modules/catalog.yaml`` plus the torch_vision entries of
``modules/catalogs/benchmark.yaml`` (``vqa-xl``, the benchmarks' monolithic model).
Seeded and reproducible. Training scenes use seeds >= 10_000_000 (disjoint from evaluation and
tests); held-out scenes use seeds >= 20_000_000. Weights are float16 state_dicts in
modules/weights/<name>.pt (``vqa-xl`` also writes its answer vocabulary, <name>.json). Prints
per model: train time and held-out accuracy by difficulty.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NotRequired, TypedDict

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.queryset import QuerySet
from benchmarks.scenes import COLOURS, DIFFICULTIES, SHAPES, Scene, generate_scene, shape_mask
from modules.backends.base import Call
from modules.backends.vision import (
    ARCHITECTURES,
    MonoVQA,
    OpenVQA,
    TorchVisionBackend,
    encode_question,
    to_batch,
)
from modules.catalog import WEIGHTS_DIR, TorchVisionSpec, load_catalog

BENCH_CATALOG = WEIGHTS_DIR.parent / "catalogs" / "benchmark.yaml"

TRAIN_SEED, EVAL_SEED = 10_000_000, 20_000_000


@dataclass(frozen=True)
class Plan:
    """Optimisation schedule of one model (fixed step counts: reproducible, not time-based)."""

    steps: int
    batch: int
    lr: float
    phases: tuple[tuple[int, int], ...] = ()  # mono: (input size, steps) curriculum, cheap sizes first
    crop: int = 0  # segdet: train on random crops this big (fully convolutional; cheaper per step)
    scenes: int = 3000  # segdet/attr: the first this many training scenes (seeds TRAIN_SEED + i)


PLANS: dict[str, Plan] = {
    "det-s": Plan(500, 32, 4e-3), "det-m": Plan(450, 32, 4e-3, crop=40),
    # the largest rungs train longer on twice the scenes: the benchmarks' ceiling is theirs
    # (held-out hard scenes: det-l recall 0.88 -> 0.93 and counts 0.80 -> 0.88, attr-l colour
    # 0.93 -> 0.95, against 600 / 1,200 steps on 3,000 scenes)
    "det-l": Plan(2400, 24, 3e-3, crop=56, scenes=6000),
    "attr-s": Plan(400, 64, 4e-3), "attr-m": Plan(500, 64, 4e-3),
    "attr-l": Plan(4800, 64, 3e-3, scenes=6000),
    "vqa-mono": Plan(480, 24, 2e-3, phases=((32, 150), (64, 300), (128, 30))),
    "vqa-xl": Plan(576, 32, 2e-3, phases=((32, 400), (64, 160), (128, 16))),
}
XL_QUESTIONS = 4  # questions asked per image per step (its own query + random others)

#: Per held-out slice (difficulty), whether each answer was right; keyed by metric.
Scores = dict[str, dict[str, list[bool]]]


class SegSet(TypedDict):
    """Detector training scenes."""

    images: np.ndarray  # (N, H, W, 3) uint8
    masks: np.ndarray  # (N, H, W) 0 background, 1 + shape index


class AttrSet(TypedDict):
    """Object crops with their colour and shape indices."""

    crops: list[np.ndarray]
    colours: list[int]
    shapes: list[int]


class HeldAttrSet(AttrSet):
    """Held-out crops, with each crop's scene difficulty."""

    diffs: list[str]


class MonoSet(TypedDict):
    """``mono_set``'s yes/no examples over the demo queries."""

    images: np.ndarray  # (N, H, W, 3) uint8
    masks: np.ndarray  # (N, H, W) 0 background, 1 + shape index
    colours: np.ndarray  # (N, H, W) 0 background, 1 + colour index
    questions: torch.Tensor  # (N, D) each example's own question
    truth: torch.Tensor  # (N, queries) every demo query's answer on the scene
    own: torch.Tensor  # (N,) the example's query index
    query_vectors: torch.Tensor  # (queries, 1, D)
    labels: torch.Tensor  # (N,) the own query's answer
    diffs: list[str]
    qids: list[str]


class XLSet(TypedDict):
    """``xl_set``'s scenes with every benchmark question's answer index."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    masks: torch.Tensor  # (N, H, W)
    colours: torch.Tensor  # (N, H, W)
    signs: torch.Tensor  # (N,) 0 no sign, 1 + sign-word index
    labels: torch.Tensor  # (N, questions) answer index, -1 where ambiguous
    own: torch.Tensor  # (N,) the question the scene was drawn for
    diffs: list[str]
    questions: list[str]
    binary: torch.Tensor  # (questions,) bool
    prior: NotRequired[dict[int, str]]  # question index -> commonest training answer


def scenes(n: int, base: int) -> list[Scene]:
    return [generate_scene(base + i) for i in range(n)]


def resize_all(images: np.ndarray, size: int) -> torch.Tensor:
    """(N,H,W,3) uint8 -> (N,3,size,size) float; chunked; same op as inference."""
    chunks: list[torch.Tensor] = []
    for i in range(0, len(images), 256):
        t = torch.from_numpy(images[i:i + 256]).permute(0, 3, 1, 2).float() / 255.0
        if t.shape[-1] != size:
            t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        chunks.append(t)
    return torch.cat(chunks)


def _fit(model: torch.nn.Module, plan: Plan, n: int, loss_fn: Callable[[torch.Tensor], torch.Tensor],
         seed: int) -> None:
    """Adam + one-cycle over ``plan.steps`` minibatches of indices into ``n`` examples."""
    opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, plan.lr, total_steps=plan.steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start, running = time.time(), 0.0
    for step in range(plan.steps):
        idx = torch.randint(0, n, (plan.batch,), generator=gen)
        loss = loss_fn(idx)
        running += loss.item()
        if (step + 1) % 100 == 0:
            print(f"    step {step + 1}/{plan.steps} loss {running / 100:.3f} {time.time() - start:.0f}s",
                  flush=True)
            running = 0.0
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        opt.step()
        sched.step()
    model.eval()


def train_segdet(spec: TorchVisionSpec, data: SegSet, plan: Plan) -> torch.nn.Module:
    s = spec.input_size
    x = resize_all(data["images"], s)
    y = F.interpolate(torch.from_numpy(data["masks"])[:, None].float(), size=(s, s),
                      mode="nearest-exact")[:, 0].long()
    model = ARCHITECTURES["segdet"](width=spec.width)
    weight = torch.tensor([1.0, 3.0, 3.0, 3.0])  # objects are a small fraction of pixels
    crop = plan.crop or s
    gen = torch.Generator().manual_seed(11)

    def loss(i: torch.Tensor) -> torch.Tensor:
        oy, ox = (int(v) for v in torch.randint(0, s - crop + 1, (2,), generator=gen))
        xb, yb = x[i, :, oy:oy + crop, ox:ox + crop], y[i, oy:oy + crop, ox:ox + crop]
        return F.cross_entropy(model(xb), yb, weight=weight)

    _fit(model, plan, len(x), loss, 1)
    return model


def object_crops(scene_list: list[Scene], rng: np.random.Generator | None
                 ) -> tuple[list[np.ndarray], list[int], list[int], list[str]]:
    """Crops of visible objects; with ``rng``, each box side jitters by up to 2 px like a detector's."""
    crops, colours, shapes, diffs = [], [], [], []
    for sc in scene_list:
        for o in sc.visible_objects:
            x0, y0, x1, y1 = o.box
            if rng is not None:
                d = rng.integers(-2, 3, size=4)
                x0, y0 = max(0, x0 + d[0]), max(0, y0 + d[1])
                x1, y1 = min(128, max(x0 + 2, x1 + d[2])), min(128, max(y0 + 2, y1 + d[3]))
            crops.append(sc.image[y0:y1, x0:x1])
            colours.append(COLOURS.index(o.colour))
            shapes.append(SHAPES.index(o.shape))
            diffs.append(sc.difficulty)
    return crops, colours, shapes, diffs


def train_attr(spec: TorchVisionSpec, data: AttrSet, plan: Plan) -> torch.nn.Module:
    x = to_batch(data["crops"], spec.input_size)
    yc, ys = torch.tensor(data["colours"]), torch.tensor(data["shapes"])
    model = ARCHITECTURES["attr"](width=spec.width)

    def loss(i: torch.Tensor) -> torch.Tensor:
        lc, ls = model(x[i])
        return F.cross_entropy(lc, yc[i]) + F.cross_entropy(ls, ys[i])

    _fit(model, plan, len(x), loss, 2)
    return model


def train_mono(spec: TorchVisionSpec, data: MonoSet, plan: Plan) -> torch.nn.Module:
    """Yes/no loss plus an auxiliary per-pixel shape/colour loss (dense signal, faster learning)."""
    model = ARCHITECTURES["mono"](width=spec.width)
    assert isinstance(model, MonoVQA)
    qs, truth, own = data["query_vectors"], data["truth"], data["own"]
    for n, (size, steps) in enumerate(plan.phases or ((spec.input_size, plan.steps),)):
        phase = Plan(steps, plan.batch, plan.lr / (1 + n))  # later (finer) phases fine-tune
        x = resize_all(data["images"], size)
        shape_t, colour_t = (F.interpolate(torch.from_numpy(a)[:, None].float(), size=size // 4,
                                           mode="nearest-exact")[:, 0].long()
                             for a in (data["masks"], data["colours"]))
        weight = torch.tensor([0.3] + [1.0] * 3), torch.tensor([0.3] + [1.0] * 6)

        # this phase's tensors bound as defaults: the loss is only called within the phase
        def loss(i: torch.Tensor, x: torch.Tensor = x, shape_t: torch.Tensor = shape_t,
                 colour_t: torch.Tensor = colour_t,
                 weight: tuple[torch.Tensor, torch.Tensor] = weight) -> torch.Tensor:
            # Every image answers every demo question: one trunk pass, one cheap head per question.
            h = model.trunk(x[i])
            dense = model.aux(h)
            qa = sum(F.binary_cross_entropy_with_logits(model.head(h, qk.expand(len(i), -1)), truth[i, k],
                                                        weight=torch.where(own[i] == k, 1.0, 0.5))
                     for k, qk in enumerate(qs))
            return (qa
                    + 0.5 * F.cross_entropy(dense[:, :4], shape_t[i], weight=weight[0])
                    + 0.5 * F.cross_entropy(dense[:, 4:], colour_t[i], weight=weight[1]))

        _fit(model, phase, len(x), loss, 3 + size)
    return model


def colour_map(scene: Scene) -> np.ndarray:
    """Per-pixel 0 (background) or 1 + colour index of the top-most object (re-rasterised)."""
    out = np.zeros(scene.mask.shape, dtype=np.int8)
    for o in sorted(scene.objects, key=lambda o: o.z):
        m = shape_mask(o.shape, o.size)
        ys, xs = np.nonzero(m)
        m = m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]  # tight: aligned with o.box
        x0, y0, x1, y1 = o.box
        out[y0:y1, x0:x1][m] = 1 + COLOURS.index(o.colour)
    return out


def mono_set(n_per_query: int, base: int) -> MonoSet:
    """Balanced yes/no examples per demo query; negatives are mostly near misses."""
    from benchmarks.queries import DEMO_QUERIES

    images, masks, colours, questions, labels, diffs, qids = [], [], [], [], [], [], []
    truth: list[list[float]] = []
    own: list[int] = []
    seed = base
    for qi, query in enumerate(DEMO_QUERIES):
        got = {True: 0, False: 0}
        while min(got.values()) < n_per_query:
            seed += 1
            kind = seed % 3  # forced positives / near misses / plain scenes
            force = (query.force if kind == 0 else
                     query.near_misses[seed // 3 % len(query.near_misses)] if kind == 1 else ())
            sc = generate_scene(seed, force=force)
            t = query.truth(sc)
            if got[t] >= n_per_query:
                continue
            got[t] += 1
            images.append(sc.image)
            masks.append(sc.mask)
            colours.append(colour_map(sc))
            truth.append([float(other.truth(sc)) for other in DEMO_QUERIES])
            own.append(qi)
            questions.append(encode_question(query.question))
            labels.append(float(t))
            diffs.append(sc.difficulty)
            qids.append(query.query_id)
    return {"images": np.stack(images), "masks": np.stack(masks), "colours": np.stack(colours),
            "questions": torch.stack(questions), "truth": torch.tensor(truth), "own": torch.tensor(own),
            "query_vectors": torch.stack([encode_question(q.question) for q in DEMO_QUERIES])[:, None],
            "labels": torch.tensor(labels), "diffs": diffs, "qids": qids}


# -- vqa-xl: one model for every benchmark question (binary yes/no and open-form) ------------
def _spec_strings(spec: object) -> set[str]:
    """Answer constants a truth spec can return (``pick`` values, ``else``, ``argmax_count``)."""
    out: set[str] = set()
    if isinstance(spec, dict):
        for _cond, value in spec.get("pick", []):
            out.add(str(value))
        if "pick" in spec:
            out.add(str(spec["else"]))
        if "argmax_count" in spec:
            out |= {str(k) for k in spec["argmax_count"]} | {str(spec.get("tie", "same"))}
        for v in spec.values():
            out |= _spec_strings(v)
    elif isinstance(spec, list):
        for v in spec:
            out |= _spec_strings(v)
    return out


def answer_vocabulary(querysets: list[QuerySet], facts: dict[str, str]) -> list[str]:
    """Every answer either benchmark can produce (normalised): yes/no, N/A, colours, shapes,
    counts, sign words, fact-table answers and the truth specs' constants."""
    from benchmarks.scenes import MAX_OBJECTS
    from benchmarks.signs import SIGN_WORDS
    from benchmarks.truth import NA
    from modules.answers import normalise_answer

    words = {"yes", "no", NA, *COLOURS, *SHAPES, *(str(n) for n in range(MAX_OBJECTS + 1)),
             *SIGN_WORDS, *facts.values()}
    for qs in querysets:
        for q in qs.queries:
            words |= _spec_strings(q.truth)
    return sorted({normalise_answer(w) for w in words})


def xl_set(per_query: int, seed: int, querysets: list[QuerySet], facts: dict[str, str],
           vocab: list[str]) -> XLSet:
    """Scenes drawn by the benchmarks' own samplers, ``per_query`` per query, with the answer
    of EVERY benchmark question on every scene (-1 where the ground truth is ambiguous).

    Binary queries: half positives (positive hints), a quarter near misses, a quarter random
    negatives. Open-form queries: a third answerable (positive hints), a third look-alike
    distractors ("N/A"), a third random scenes.
    """
    from benchmarks.sampling import draw_item
    from benchmarks.signs import SIGN_WORDS
    from benchmarks.truth import NA, Ambiguous, evaluate

    questions = [(qs, q) for qs in querysets for q in qs.queries]
    index = {a: i for i, a in enumerate(vocab)}
    images, masks, colours, signs, labels, own, diffs = [], [], [], [], [], [], []
    for j, (qs, query) in enumerate(questions):
        rng = np.random.default_rng([seed, j])
        for k in range(per_query):
            if qs.answer_type == "bool":
                kind = k % 4
                hint = (query.positive[k % len(query.positive)] if kind < 2 else
                        query.near_misses[k % len(query.near_misses)] if kind == 2 and query.near_misses
                        else None)
                want = (lambda a: a is True) if kind < 2 else (lambda a: a is False)
            else:
                kind = k % 3
                hint = (query.positive[k % len(query.positive)] if kind == 0 else
                        query.distractors[k % len(query.distractors)] if kind == 1 and query.distractors
                        else None)
                want = ((lambda a: a != NA) if kind == 0 else (lambda a: a == NA) if hint is not None
                        else (lambda a: True))
            try:
                item, *_ = draw_item(qs, query, hint, want, rng, facts)
            except RuntimeError:
                continue
            row = []
            for other_qs, other in questions:
                try:
                    a = evaluate(other.truth, item, facts, other_qs.answer_type)
                except Ambiguous:
                    row.append(-1)
                    continue
                row.append(index[("yes" if a else "no") if isinstance(a, bool) else a])
            images.append(item.image)
            masks.append(item.scene.mask)
            colours.append(colour_map(item.scene))
            signs.append(SIGN_WORDS.index(item.sign_text) + 1 if item.sign_text else 0)
            labels.append(row)
            own.append(j)
            diffs.append(item.difficulty)
    return {"images": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
            "masks": torch.from_numpy(np.stack(masks)), "colours": torch.from_numpy(np.stack(colours)),
            "signs": torch.tensor(signs), "labels": torch.tensor(labels), "own": torch.tensor(own),
            "diffs": diffs, "questions": [q.question for _, q in questions],
            "binary": torch.tensor([qs.answer_type == "bool" for qs, _ in questions])}


def xl_answer_sets(data: XLSet, vocab: list[str]) -> dict[str, list[str]]:
    """Per question, the answers it was trained with: yes/no for binary questions, else every
    answer seen on the training scenes (decoding is restricted to them)."""
    sets = {}
    for j, question in enumerate(data["questions"]):
        if data["binary"][j]:
            sets[question] = ["yes", "no"]
        else:
            seen = sorted(set(data["labels"][:, j].tolist()) - {-1})
            sets[question] = [vocab[i] for i in seen]
    return sets


def xl_label_weights(data: XLSet, n_answers: int) -> torch.Tensor:
    """(questions, answers) loss weights against the answer prior: a binary question's yes and
    no weigh the same in total (its items are mostly "no"); an open question's answers by
    1/sqrt(frequency) (milder: exact match rewards the prior when in doubt). Mean weight 1."""
    out = torch.ones(len(data["questions"]), n_answers)
    for j in range(len(data["questions"])):
        col = data["labels"][:, j]
        freq = torch.bincount(col[col >= 0], minlength=n_answers).float()
        freq = freq / freq.sum().clamp(min=1)
        seen = freq > 0
        w = torch.zeros(n_answers)
        w[seen] = 1 / freq[seen] if data["binary"][j] else freq[seen].rsqrt()
        w = w / (w * freq).sum().clamp(min=1e-9)
        out[j] = torch.where(seen, w.clamp(0.1, 10.0), torch.ones(n_answers))
    return out


def train_xl(spec: TorchVisionSpec, data: XLSet, plan: Plan, vocab: list[str],
             answer_sets: dict[str, list[str]]) -> torch.nn.Module:
    """Answer loss over many questions per trunk pass, plus auxiliary shape/colour/sign losses."""
    model = ARCHITECTURES[spec.architecture](width=spec.width, n_answers=len(vocab))
    assert isinstance(model, OpenVQA)
    # Module.to converts in place and takes memory_format at run time; torch's overloads leave it out
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    qvec = torch.stack([encode_question(q) for q in data["questions"]])
    allowed = torch.zeros(len(data["questions"]), len(vocab), dtype=torch.bool)
    index = {a: i for i, a in enumerate(vocab)}
    for j, q in enumerate(data["questions"]):
        allowed[j, [index[a] for a in answer_sets[q]]] = True
    labels, own, n_q = data["labels"], data["own"], len(data["questions"])
    label_w = xl_label_weights(data, len(vocab))
    weight = torch.tensor([0.3] + [1.0] * 3), torch.tensor([0.3] + [1.0] * 6)
    gen = torch.Generator().manual_seed(7)
    for n, (size, steps) in enumerate(plan.phases or ((spec.input_size, plan.steps),)):
        phase = Plan(steps, plan.batch, plan.lr / (1 + n))  # later (finer) phases fine-tune

        def loss(i: torch.Tensor, size: int = size) -> torch.Tensor:
            x = data["images"][i].float() / 255.0
            if size != x.shape[-1]:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            h, mid = model.trunk(x.contiguous(memory_format=torch.channels_last))
            # one trunk pass, one cheap head per question: the image's own query and random others
            others = torch.randint(0, n_q, (len(i), XL_QUESTIONS - 1), generator=gen)
            qs = torch.cat([own[i][:, None], others], 1)
            y = labels[i[:, None], qs].reshape(-1)
            w = label_w[qs.reshape(-1), y.clamp(min=0)] * (y >= 0)
            logits = model.head(h.repeat_interleave(XL_QUESTIONS, 0), qvec[qs.reshape(-1)])
            logits = logits.masked_fill(~allowed[qs.reshape(-1)], -1e4)
            qa = (F.cross_entropy(logits, y.clamp(min=0), reduction="none") * w).sum() / w.sum().clamp(min=1)
            shape_t, colour_t = (F.interpolate(t[i][:, None].float(), size=mid.shape[-1],
                                               mode="nearest-exact")[:, 0].long()
                                 for t in (data["masks"], data["colours"]))
            dense = model.aux(mid)
            return (qa + 0.5 * F.cross_entropy(dense[:, :4], shape_t, weight=weight[0])
                    + 0.5 * F.cross_entropy(dense[:, 4:], colour_t, weight=weight[1])
                    + 0.3 * F.cross_entropy(model.sign_logits(h), data["signs"][i]))

        _fit(model, phase, len(data["own"]), loss, 5 + size)
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return model


def eval_xl(backend: TorchVisionBackend, data: XLSet, vocab: list[str]) -> Scores:
    """Each held-out scene asked its own query: yes/no accuracy (binary), exact match (open-form);
    ``*-prior`` is the most frequent training answer of the question (what no looking gives)."""
    images = data["images"].permute(0, 2, 3, 1).numpy()
    own = data["own"].tolist()
    calls = [Call("query", images[k], (data["questions"][j],)) for k, j in enumerate(own)]
    answers = [o.value for o in backend.infer(calls)]
    prior = data.get("prior", {})
    out: Scores = {"binary yes/no": defaultdict(list), "open EM": defaultdict(list),
                   "open EM prior": defaultdict(list)}
    for k, (j, a, d) in enumerate(zip(own, answers, data["diffs"], strict=True)):
        y = int(data["labels"][k, j])
        if y < 0:
            continue
        if data["binary"][j]:
            out["binary yes/no"][d].append(a == vocab[y])
        else:
            out["open EM"][d].append(a == vocab[y])
            out["open EM prior"][d].append(prior.get(j) == vocab[y])
    return out


def _table(hits: dict[str, list[bool]]) -> str:
    return "  ".join(f"{d}={np.mean(hits[d]):.3f}(n={len(hits[d])})" for d in DIFFICULTIES if hits[d])


def eval_detector(backend: TorchVisionBackend, scene_list: list[Scene]) -> Scores:
    """Recall of visible objects (same shape, IoU >= 0.5) and per-shape count accuracy."""
    recall: dict[str, list[bool]] = defaultdict(list)
    counts: dict[str, list[bool]] = defaultdict(list)
    for sc in scene_list:
        found = [o.value for o in backend.infer([Call("find", sc.image, (s,)) for s in SHAPES])]
        for shape, boxes in zip(SHAPES, found, strict=True):
            truth = [o for o in sc.visible_objects if o.shape == shape]
            counts[sc.difficulty].append(len(boxes) == len(truth))
            for o in truth:
                recall[sc.difficulty].append(any(_iou(o.box, b) >= 0.5 for b in boxes))
    return {"recall": recall, "count": counts}


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def eval_attr(backend: TorchVisionBackend, data: HeldAttrSet) -> Scores:
    calls = [Call("query", c, ("what colour is this?",)) for c in data["crops"]]
    calls += [Call("query", c, ("what shape is this?",)) for c in data["crops"]]
    answers = [o.value for o in backend.infer(calls)]
    n = len(data["crops"])
    colour: dict[str, list[bool]] = defaultdict(list)
    shape: dict[str, list[bool]] = defaultdict(list)
    for i, d in enumerate(data["diffs"]):
        colour[d].append(answers[i] == COLOURS[data["colours"][i]])
        shape[d].append(answers[n + i] == SHAPES[data["shapes"][i]])
    return {"colour": colour, "shape": shape}


def eval_mono(backend: TorchVisionBackend, data: MonoSet, questions: dict[str, str]) -> Scores:
    calls = [Call("query", img, (questions[qid],))
             for img, qid in zip(data["images"], data["qids"], strict=True)]
    answers = [o.value for o in backend.infer(calls)]
    acc: dict[str, list[bool]] = defaultdict(list)
    for a, y, d in zip(answers, data["labels"].tolist(), data["diffs"], strict=True):
        acc[d].append((a == "yes") == bool(y))
    return {"yes/no": acc}


def save(model: torch.nn.Module, spec: TorchVisionSpec) -> None:
    state = {k: (v.half() if v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    torch.save(state, WEIGHTS_DIR / spec.weights)


def train_specs() -> list[TorchVisionSpec]:
    """The torch_vision backends of catalog.yaml and of the benchmark catalog."""
    return [s for s in load_catalog() + load_catalog(BENCH_CATALOG) if s.kind == "torch_vision"]


def _train_xl(spec: TorchVisionSpec, plan: Plan, per_query: int
              ) -> tuple[torch.nn.Module, Callable[[TorchVisionBackend], Scores]]:
    """Draw the data, train, write the vocabulary JSON; the held-out evaluation to run."""
    from benchmarks.queryset import default_queryset, load_queryset
    from benchmarks.truth import load_facts

    start = time.time()
    querysets = [load_queryset(default_queryset(b)) for b in ("binary", "openform")]
    facts = load_facts()
    vocab = answer_vocabulary(querysets, facts)
    data = xl_set(per_query, TRAIN_SEED + 3_000_000, querysets, facts, vocab)
    held = xl_set(8, EVAL_SEED + 3_000_000, querysets, facts, vocab)  # binary: 4 yes, 4 no
    print(f"vqa-xl data: {len(data['own'])} training scenes, {len(held['own'])} held out, "
          f"{len(vocab)} answers, in {time.time() - start:.1f}s", flush=True)
    answer_sets = xl_answer_sets(data, vocab)
    model = train_xl(spec, data, plan, vocab, answer_sets)
    vocab_path = (WEIGHTS_DIR / spec.weights).with_suffix(".json")
    # without the old calibration (it was chosen for the old weights): run benchmarks.calibrate
    vocab_path.write_text(json.dumps({"answers": vocab, "answer_sets": answer_sets}, indent=1) + "\n")
    for j in range(len(data["questions"])):  # the no-look baseline: each question's commonest answer
        col = data["labels"][:, j]
        col = col[col >= 0]
        if len(col):
            held.setdefault("prior", {})[j] = vocab[int(torch.bincount(col).argmax())]
    return model, lambda b: eval_xl(b, held, vocab)


def main(argv: list[str] | None = None) -> None:
    """Train (or with --only, retrain some of) the catalog's torch_vision backends."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", help="backend names to train (default: all)")
    ap.add_argument("--scenes", type=int, default=None,
                    help="training scenes for detectors/attr (default: each model's plan's)")
    ap.add_argument("--mono-per-query", type=int, default=600, help="positives (=negatives) per query")
    ap.add_argument("--xl-per-query", type=int, default=100,
                    help="vqa-xl training scenes per benchmark query")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    specs = [s for s in train_specs() if not args.only or s.name in args.only]
    t0 = time.time()

    def n_scenes(name: str) -> int:
        return args.scenes or PLANS[name].scenes

    if any(s.architecture in ("segdet", "attr") for s in specs):
        # one set, as many scenes as the most any model asked for uses; each model takes its
        # first n_scenes (the same scenes and crops a run with only that many would make)
        train = scenes(max(n_scenes(s.name) for s in specs if s.architecture in ("segdet", "attr")),
                       TRAIN_SEED)
        held = scenes(400, EVAL_SEED)
        seg: SegSet = {"images": np.stack([s.image for s in train]),
                       "masks": np.stack([s.mask for s in train])}
        crops, colours, shapes, _ = object_crops(train, np.random.default_rng(0))
        attr: AttrSet = {"crops": crops, "colours": colours, "shapes": shapes}
        first_crops = np.cumsum([0] + [len(s.visible_objects) for s in train])  # crops of the first k
        c, co, sh, di = object_crops(held, None)
        attr_held: HeldAttrSet = {"crops": c, "colours": co, "shapes": sh, "diffs": di}
        print(f"data: {len(train)} scenes, {len(crops)} crops in {time.time() - t0:.1f}s", flush=True)
    for spec in specs:
        start = time.time()
        plan = PLANS[spec.name]
        torch.manual_seed(zlib.crc32(spec.name.encode()))  # per model: --only reproduces a full run
        model: torch.nn.Module
        evaluate: Callable[[TorchVisionBackend], Scores]
        if spec.architecture == "segdet":
            k = n_scenes(spec.name)
            part: SegSet = {"images": seg["images"][:k], "masks": seg["masks"][:k]}
            model, evaluate = train_segdet(spec, part, plan), lambda b: eval_detector(b, held)
        elif spec.architecture == "attr":
            k = int(first_crops[n_scenes(spec.name)])
            some: AttrSet = {"crops": attr["crops"][:k], "colours": attr["colours"][:k],
                             "shapes": attr["shapes"][:k]}
            model, evaluate = train_attr(spec, some, plan), lambda b: eval_attr(b, attr_held)
        elif spec.architecture == "mono_open":
            model, evaluate = _train_xl(spec, plan, args.xl_per_query)
        else:
            from benchmarks.queries import DEMO_QUERIES

            mono = mono_set(args.mono_per_query, TRAIN_SEED + 1_000_000)
            model = train_mono(spec, mono, plan)
            mono_held = mono_set(80, EVAL_SEED + 1_000_000)
            qs = {q.query_id: q.question for q in DEMO_QUERIES}
            evaluate = partial(eval_mono, data=mono_held, questions=qs)
        took = time.time() - start
        save(model, spec)
        backend = TorchVisionBackend(spec)
        backend.setup()
        for metric, hits in evaluate(backend).items():
            print(f"{spec.name:9s} {metric:7s} {_table(hits)}", flush=True)
        print(f"{spec.name:9s} trained in {took:.1f}s  flops={backend.flops(Call('find', None)):.3g} "
              f"params={backend.params()}", flush=True)
    print(f"total {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
