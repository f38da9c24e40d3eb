"""The image-patch type programs compute with: a box on a shared image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modules.errors import ExecutionError

#: Attributes and methods a program may use on a patch (everything else is rejected).
PATCH_ATTRIBUTES = frozenset({"x0", "y0", "x1", "y1", "width", "height", "area", "center_x", "center_y"})
PATCH_METHODS = frozenset({"left_of", "right_of", "above", "below", "overlaps", "crop"})


@dataclass(frozen=True, eq=False)
class ImagePatch:
    """A rectangle ``[x0, x1) × [y0, y1)`` of ``image`` (whole-image pixel coordinates)."""

    image: np.ndarray
    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def whole(cls, image: np.ndarray) -> ImagePatch:
        return cls(image, 0, 0, int(image.shape[1]), int(image.shape[0]))

    @property
    def pixels(self) -> np.ndarray:
        """The patch's pixels (a view, never a copy)."""
        return self.image[self.y0 : self.y1, self.x0 : self.x1]

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)

    @property
    def center_x(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def center_y(self) -> float:
        return (self.y0 + self.y1) / 2

    def crop(self, x0: int, y0: int, x1: int, y1: int) -> ImagePatch:
        """A sub-patch; coordinates are relative to this patch and clipped to it."""
        for v in (x0, y0, x1, y1):
            if not isinstance(v, int) or isinstance(v, bool):
                raise ExecutionError(f"crop expects integer coordinates, got {v!r}")
        nx0 = min(max(self.x0 + x0, self.x0), self.x1)
        ny0 = min(max(self.y0 + y0, self.y0), self.y1)
        nx1 = min(max(self.x0 + x1, nx0), self.x1)
        ny1 = min(max(self.y0 + y1, ny0), self.y1)
        return ImagePatch(self.image, nx0, ny0, nx1, ny1)

    def child(self, box: tuple[int, int, int, int]) -> ImagePatch:
        """A patch for a box given in this patch's own pixel coordinates."""
        return self.crop(*(int(v) for v in box))

    def left_of(self, other: ImagePatch) -> bool:
        return self.center_x < _patch(other, "left_of").center_x

    def right_of(self, other: ImagePatch) -> bool:
        return self.center_x > _patch(other, "right_of").center_x

    def above(self, other: ImagePatch) -> bool:
        return self.center_y < _patch(other, "above").center_y

    def below(self, other: ImagePatch) -> bool:
        return self.center_y > _patch(other, "below").center_y

    def overlaps(self, other: ImagePatch) -> bool:
        o = _patch(other, "overlaps")
        return self.x0 < o.x1 and o.x0 < self.x1 and self.y0 < o.y1 and o.y0 < self.y1

    def __repr__(self) -> str:
        return f"ImagePatch({self.x0}, {self.y0}, {self.x1}, {self.y1})"


def _patch(value: object, method: str) -> ImagePatch:
    if not isinstance(value, ImagePatch):
        raise ExecutionError(f"{method} expects a patch, got {type(value).__name__}")
    return value
