"""The host-side text weights of a CLIP/SigLIP backend, read out of Immich's own textual ONNX.

A Hailo text encoder runs only the middle of the model; the host needs the token-embedding table
and, depending on the cut, the position table, the final LayerNorm and the projection
(`ml_target.text.host_weights`). Immich publishes exactly these weights inside its
`textual/model.onnx` (open_clip's `encode_text(normalize=True)`, exported by torch at opset 17 or
later), so they are taken from there with the `onnx` package: no torch, no checkpoint, and the
same weights Immich's own text encoder uses.

The tensors are found by their place in the graph, not by name (names differ between open_clip,
transformers and optimised exports, and constant folding renames them):
- token table: the `Gather` whose data is a 2-D initialiser and whose indices come from the graph
  input (through casts and reshapes);
- position table: the other operand of the `Add` that consumes it, an initialiser of (L, W) or
  (1, L, W), or the table a constant-index `Gather` reads (transformers' position ids);
- final LayerNorm: the last `LayerNormalization` of the graph (scale, bias, epsilon);
- projection: the last `MatMul`/`Gemm` with a 2-D initialiser after that LayerNorm, stored in
  OpenAI's (in, out) orientation (a `Gemm` with transB=1 holds it transposed), with its bias if
  a `Gemm` carries one or an `Add` of a 1-D initialiser follows.
Every table must agree on the text width; anything missing or inconsistent is an error naming it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from ml_target.errors import ConfigurationError
from ml_target.text.host_weights import TextHostWeights

# Nodes between the graph input and the token Gather's indices in the exports seen so far.
_PASS_THROUGH = frozenset({"Cast", "Reshape", "Unsqueeze", "Squeeze", "Identity", "Flatten"})
DEFAULT_LAYER_NORM_EPS = 1e-5


class _Graph:
    """Producers, consumers and constant values of one ONNX graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.nodes = list(graph.node)
        self.inputs = [i.name for i in graph.input]
        self._initialisers = {t.name: t for t in graph.initializer}
        self._constants = {
            node.output[0]: attribute.t
            for node in self.nodes
            if node.op_type == "Constant"
            for attribute in node.attribute
            if attribute.name == "value"
        }
        self.producer = {output: node for node in self.nodes for output in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def initialiser(self, name: str) -> np.ndarray | None:
        tensor = self._initialisers.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def constant(self, name: str) -> np.ndarray | None:
        """An initialiser or the value of a `Constant` node."""
        tensor = self._initialisers.get(name)
        if tensor is None:
            tensor = self._constants.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def comes_from_input(self, name: str) -> bool:
        while name not in self.inputs:
            node = self.producer.get(name)
            if node is None or node.op_type not in _PASS_THROUGH:
                return False
            name = node.input[0]
        return True


def _attribute(node: onnx.NodeProto, name: str, default: float | int) -> float | int:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _token_gather(graph: _Graph) -> onnx.NodeProto:
    found = [
        node
        for node in graph.nodes
        if node.op_type == "Gather"
        and (table := graph.initialiser(node.input[0])) is not None
        and table.ndim == 2
        and graph.comes_from_input(node.input[1])
    ]
    if len(found) != 1:
        raise ConfigurationError(
            f"expected one token-embedding lookup (a Gather of a 2-D table by the input ids), found {len(found)}"
        )
    return found[0]


def _position_table(graph: _Graph, token_output: str, width: int) -> np.ndarray | None:
    for node in graph.consumers.get(token_output, []):
        if node.op_type != "Add":
            continue
        other = node.input[1] if node.input[0] == token_output else node.input[0]
        table = graph.initialiser(other)
        if table is None and (gather := graph.producer.get(other)) is not None and gather.op_type == "Gather":
            table = graph.initialiser(gather.input[0])
            if table is not None and graph.constant(gather.input[1]) is None:
                table = None  # a lookup by something other than fixed position ids
        if table is not None:
            table = table.reshape(-1, table.shape[-1])
            if table.shape[1] == width:
                return table
    return None


def _last(nodes: Iterable[tuple[int, onnx.NodeProto]], op_types: set[str]) -> tuple[int, onnx.NodeProto] | None:
    found = [(i, node) for i, node in nodes if node.op_type in op_types]
    return found[-1] if found else None


def _projection(graph: _Graph, after: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(projection (in, out), bias or None) of the last linear layer after node index `after`."""
    candidates = [
        (i, node)
        for i, node in enumerate(graph.nodes)
        if i > after
        and node.op_type in ("MatMul", "Gemm")
        and (weight := graph.initialiser(node.input[1])) is not None
        and weight.ndim == 2
        and graph.initialiser(node.input[0]) is None
    ]
    if not candidates:
        return None, None
    _, node = candidates[-1]
    weight = graph.initialiser(node.input[1])
    bias = None
    if node.op_type == "Gemm":
        if _attribute(node, "transA", 0) or _attribute(node, "alpha", 1.0) != 1.0 or _attribute(node, "beta", 1.0) != 1.0:
            raise ConfigurationError(f"projection {node.name!r} is a Gemm with transA/alpha/beta that is not a plain linear layer")
        if _attribute(node, "transB", 0):
            weight = weight.T
        if len(node.input) > 2 and node.input[2]:
            bias = graph.initialiser(node.input[2])
    else:
        for consumer in graph.consumers.get(node.output[0], []):
            if consumer.op_type == "Add":
                other = consumer.input[1] if consumer.input[0] == node.output[0] else consumer.input[0]
                candidate = graph.initialiser(other)
                if candidate is not None and candidate.ndim == 1:
                    bias = candidate
    return np.ascontiguousarray(weight, dtype=np.float32), None if bias is None else bias.astype(np.float32)


def host_weights_from_textual_onnx(model: onnx.ModelProto, *, source: str, embedding_dtype: str = "float32") -> TextHostWeights:
    """Token and position tables, final LayerNorm and projection of an Immich textual ONNX.

    Raises ConfigurationError naming the part that could not be found or does not fit the others.
    """
    graph = _Graph(model.graph)
    token_gather = _token_gather(graph)
    token = graph.initialiser(token_gather.input[0])
    width = int(token.shape[1])
    positions = _position_table(graph, token_gather.output[0], width)
    norm = _last(enumerate(graph.nodes), {"LayerNormalization"})
    if norm is None:
        raise ConfigurationError("no LayerNormalization in the text encoder (Immich exports at opset >= 17 have them)")
    norm_index, norm_node = norm
    ln_weight, ln_bias = (graph.initialiser(name) for name in norm_node.input[1:3])
    if ln_weight is None or ln_bias is None or ln_weight.shape != (width,) or ln_bias.shape != (width,):
        raise ConfigurationError(f"the final LayerNorm {norm_node.name!r} has no ({width},) scale and bias initialisers")
    projection, bias = _projection(graph, norm_index)
    if projection is not None and projection.shape[0] != width:
        raise ConfigurationError(f"the projection {projection.shape} does not start at the text width {width}")
    # ONNX stores epsilon as float32: keep its shortest decimal form (1e-06, not 9.99999997e-07).
    eps = float(str(np.float32(_attribute(norm_node, "epsilon", DEFAULT_LAYER_NORM_EPS))))
    return TextHostWeights(
        token_embedding=np.ascontiguousarray(token.astype(embedding_dtype)),
        position_embedding=None if positions is None else np.ascontiguousarray(positions, dtype=np.float32),
        final_ln_weight=ln_weight.astype(np.float32),
        final_ln_bias=ln_bias.astype(np.float32),
        text_projection=projection,
        text_projection_bias=bias,
        layer_norm_eps=eps,
        source=source,
    )
