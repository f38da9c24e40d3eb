"""FLOPs and parameters of ONNX models, counted from the graph (for non-torch backends).

The count is the ONNX equivalent of ``torch.utils.flop_counter``: shapes are inferred for a
concrete input shape (``onnx.shape_inference``) and every Conv, ConvTranspose, MatMul, Gemm,
LSTM and GRU node (and their 8-bit forms ConvInteger, MatMulInteger, DynamicQuantizeLSTM)
counts 2 operations per multiply-accumulate. Element-wise ops, pooling and
activations are not counted (torch's counter skips them too). Parameters are the elements
of the graph's weights (float or 8-bit initializers and Constant tensors).
"""

from __future__ import annotations

from functools import lru_cache
from math import prod
from pathlib import Path
from typing import Any


def _shape_map(model: Any) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    graph = model.graph
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    for node in graph.node:  # some exporters store weights as Constant nodes
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = list(a.t.dims)
    return shapes


@lru_cache(maxsize=8)
def _load(path: str) -> Any:
    import onnx

    return onnx.load(path)


def _attr(node: Any, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return list(a.ints) if a.ints else a.i
    return default


def _node_flops(node: Any, shapes: dict[str, list[int]]) -> int:
    op = node.op_type
    ins = [shapes.get(n, []) for n in node.input]
    out = shapes.get(node.output[0], []) if node.output else []
    if op in ("Conv", "ConvInteger") and len(ins) >= 2 and ins[1] and out:
        return 2 * prod(out) * prod(ins[1][1:])  # weight (Cout, Cin/g, kh, kw): MACs per output
    if op == "ConvTranspose" and len(ins) >= 2 and ins[0] and ins[1]:
        return 2 * prod(ins[0]) * prod(ins[1][1:])  # weight (Cin, Cout/g, kh, kw): MACs per input
    if op in ("MatMul", "Gemm", "MatMulInteger") and len(ins) >= 2 and ins[0] and ins[1] and out:
        k = ins[0][-1] if not (op == "Gemm" and _attr(node, "transA", 0)) else ins[0][0]
        return 2 * prod(out) * k
    if op in _RECURRENT and len(ins) >= 3 and ins[0] and ins[1] and ins[2]:
        seq, batch = ins[0][0], ins[0][1]
        return 2 * seq * batch * (prod(ins[1]) + prod(ins[2]))  # input + recurrent weights per step
    return 0


#: Recurrent ops: (X, W, R, ...) with every weight used once per step and batch row.
_RECURRENT = ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM")


def _recurrent_outputs(model: Any, shapes: dict[str, list[int]]) -> bool:
    """Declare output shapes of recurrent ops that shape inference leaves open (custom domains)."""
    import onnx

    added = False
    for node in model.graph.node:
        if node.op_type not in _RECURRENT or not node.output or shapes.get(node.output[0]):
            continue
        x = shapes.get(node.input[0])
        w = shapes.get(node.input[1])
        hidden = _attr(node, "hidden_size", 0)
        if not x or not w or not hidden or 0 in x:
            continue
        dims = [x[0], w[0], x[1], hidden]  # Y: (seq, directions, batch, hidden)
        model.graph.value_info.append(onnx.helper.make_tensor_value_info(node.output[0], 1, dims))
        added = True
    return added


@lru_cache(maxsize=256)
def onnx_flops(path: str, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of the model at ``path`` for ``input_shape`` (first input).

    Raises:
        ValueError: shape inference could not resolve the graph for this input.
    """
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(_load(path))
    first = model.graph.input[0]
    dims = first.type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ValueError(f"{Path(path).name}: input {first.name!r} has rank {len(dims)}, "
                         f"got shape {input_shape}")
    for d, v in zip(dims, input_shape, strict=True):
        d.Clear()
        d.dim_value = int(v)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = _shape_map(inferred)
    if _recurrent_outputs(inferred, shapes):
        inferred = onnx.shape_inference.infer_shapes(inferred, data_prop=True)
        shapes = _shape_map(inferred)
    total = sum(_node_flops(n, shapes) for n in inferred.graph.node)
    if total == 0:
        raise ValueError(f"{Path(path).name}: no countable node resolved for input {input_shape}")
    return total


@lru_cache(maxsize=64)
def onnx_params(path: str) -> int:
    """Elements of the model's weights (float or 8-bit quantized).

    Counts the initializers and the Constant tensors of rank >= 1.
    """
    graph = _load(path).graph
    n = sum(prod(init.dims) for init in graph.initializer if init.data_type in _FLOAT_TYPES)
    for node in graph.node:
        if node.op_type == "Constant":
            n += sum(prod(a.t.dims) for a in node.attribute
                     if a.name == "value" and len(a.t.dims) >= 1 and a.t.data_type in _FLOAT_TYPES)
    return int(n)


_FLOAT_TYPES = frozenset({1, 2, 3, 10, 11, 16})  # FLOAT, UINT8, INT8 (quantized), FLOAT16, DOUBLE, BF16
