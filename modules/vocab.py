"""The scene vocabulary shared by the scene generator, the vision backends and the grammar.

One definition: ``benchmarks.scenes`` draws objects from it, ``modules.backends.vision`` maps
its class heads onto it (detector class ``1 + SHAPES.index(shape)``, classifier logits in this
order) and ``modules.synthesis.grammar`` accepts its words. The order is part of the trained
weights, so it never changes.
"""

from __future__ import annotations

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
