"""Compositional yes/no queries over procedural scenes: question, program, exact truth.

Each query's program checks cheap existence first and exits early, as the paper's
programs do; ``truth`` computes the answer from the scene's ground-truth objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Objects = list[Any]  # visible SceneObjects of benchmarks.scenes


@dataclass(frozen=True)
class Query:
    """A question, its reference program, and how to make positives and near misses.

    Attributes:
        force: (shape, colour) objects that make a positive likely when forced.
        near_misses: object sets that come close (the right objects with a wrong
            colour or relation), used to make hard negatives.
    """

    query_id: str
    question: str
    program: str
    rule: Callable[[Objects], bool]
    force: tuple[tuple[str, str], ...]
    near_misses: tuple[tuple[tuple[str, str], ...], ...]

    def truth(self, scene: Any) -> bool:
        return bool(self.rule(list(scene.visible_objects)))

    @property
    def monolithic_program(self) -> str:
        """The baseline: one call to a single image+question model."""
        return f'def execute_command(image):\n    return query(image, "{self.question}") == "yes"\n'


def _of(objs: Objects, shape: str | None = None, colour: str | None = None) -> Objects:
    return [o for o in objs if (shape is None or o.shape == shape) and (colour is None or o.colour == colour)]


def _red_circle_left_of_blue_square(objs: Objects) -> bool:
    return any(c.center[0] < s.center[0]
               for c in _of(objs, "circle", "red") for s in _of(objs, "square", "blue"))


def _two_triangles_one_green(objs: Objects) -> bool:
    return len(_of(objs, "triangle")) >= 2 and bool(_of(objs, "triangle", "green"))


def _yellow_above_purple_circle(objs: Objects) -> bool:
    return any(o.center[1] < c.center[1] and o is not c
               for c in _of(objs, "circle", "purple") for o in _of(objs, colour="yellow"))


RED_CIRCLE_LEFT_OF_BLUE_SQUARE = Query(
    "red_circle_left_of_blue_square",
    "Is there a red circle to the left of a blue square?",
    '''def execute_command(image):
    if not exists(image, "circle"):
        return False
    if not exists(image, "square"):
        return False
    for circle in find(image, "circle"):
        if verify_property(circle, "circle", "red"):
            for square in find(image, "square"):
                if circle.left_of(square) and verify_property(square, "square", "blue"):
                    return True
    return False
''',
    _red_circle_left_of_blue_square,
    force=(("circle", "red"), ("square", "blue")),
    near_misses=((("circle", "orange"), ("square", "blue")), (("circle", "red"), ("square", "purple")),
                 (("circle", "red"), ("triangle", "blue")), (("circle", "red"), ("square", "blue"))),
)

TWO_TRIANGLES_ONE_GREEN = Query(
    "two_triangles_one_green",
    "Are there at least two triangles, one of them green?",
    '''def execute_command(image):
    triangles = find(image, "triangle")
    if len(triangles) < 2:
        return False
    for triangle in triangles:
        if verify_property(triangle, "triangle", "green"):
            return True
    return False
''',
    _two_triangles_one_green,
    force=(("triangle", "green"), ("triangle", "orange")),
    near_misses=((("triangle", "green"),), (("triangle", "yellow"), ("triangle", "blue")),
                 (("triangle", "green"), ("square", "green"))),
)

YELLOW_ABOVE_PURPLE_CIRCLE = Query(
    "yellow_above_purple_circle",
    "Is there a yellow object above a purple circle?",
    '''def execute_command(image):
    if not exists(image, "circle"):
        return False
    shapes = find(image, "object")
    for circle in find(image, "circle"):
        if query(circle, "what colour is this?") == "purple":
            for other in shapes:
                if other.above(circle) and verify_property(other, "object", "yellow"):
                    return True
    return False
''',
    _yellow_above_purple_circle,
    force=(("circle", "purple"), ("square", "yellow")),
    near_misses=((("circle", "blue"), ("triangle", "yellow")), (("circle", "purple"), ("square", "orange")),
                 (("circle", "purple"), ("triangle", "yellow"))),
)

DEMO_QUERIES: list[Query] = [
    RED_CIRCLE_LEFT_OF_BLUE_SQUARE,
    TWO_TRIANGLES_ONE_GREEN,
    YELLOW_ABOVE_PURPLE_CIRCLE,
]
QUERIES: dict[str, Query] = {q.query_id: q for q in DEMO_QUERIES}
