"""Host-side CLIP text weights read out of an Immich-style textual ONNX (no torch needed).

The ONNX files are built with `ml_target.testing.textual_onnx` from known numpy weights in the
shapes torch exports them (open_clip: positions added as an initialiser, `x @ text_projection`;
transformers: positions looked up by constant ids; a Linear head as `Gemm` with transB=1 or as
MatMul + Add). `tests/test_onnx_host_torch.py` checks the same extraction on real exports of tiny
transformers models against the checkpoint export.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from ml_target.errors import ConfigurationError
from ml_target.testing.textual_onnx import textual_model
from ml_target.text.onnx_host import host_weights_from_textual_onnx


@pytest.mark.parametrize("projection", ["matmul", "gemm", "matmul_add"])
@pytest.mark.parametrize("positions", ["add", "gather"])
def test_every_host_array_is_found_by_its_place_in_the_graph(projection: str, positions: str) -> None:
    model, expected = textual_model(vocab=50, width=12, dim=10, projection=projection, positions=positions, seed=3)
    weights = host_weights_from_textual_onnx(model, source="immich-app/test")
    for name, array in expected.items():
        found = getattr(weights, name)
        assert found is not None and found.dtype == np.float32, name
        np.testing.assert_array_equal(found, array, err_msg=name)
    if projection == "matmul":
        assert weights.text_projection_bias is None
    assert weights.layer_norm_eps == 1e-5 and weights.source == "immich-app/test" and not weights.stand_in


def test_epsilon_keeps_its_decimal_value_and_the_table_its_dtype() -> None:
    model, expected = textual_model(vocab=20, eps=1e-6)
    weights = host_weights_from_textual_onnx(model, source="x", embedding_dtype="float16")
    assert weights.layer_norm_eps == 1e-6  # stored as float32 in the graph: 9.99999997e-07
    assert weights.token_embedding.dtype == np.float16
    np.testing.assert_allclose(weights.token_embedding, expected["token_embedding"], rtol=1e-3, atol=1e-3)


def _without(model: onnx.ModelProto, op_type: str) -> onnx.ModelProto:
    """The graph with every `op_type` node bypassed (its first input wired to its output)."""
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    for node in [n for n in edited.graph.node if n.op_type == op_type]:
        edited.graph.node.remove(node)
        edited.graph.node.insert(0, helper.make_node("Identity", [node.input[0]], [node.output[0]], name=f"skip_{node.name}"))
    return edited


def test_a_graph_without_layer_norm_is_refused() -> None:
    model, _ = textual_model(vocab=20)
    with pytest.raises(ConfigurationError, match="no LayerNormalization"):
        host_weights_from_textual_onnx(_without(model, "LayerNormalization"), source="x")


def test_an_ambiguous_token_lookup_is_refused() -> None:
    """Two 2-D tables indexed by the ids (e.g. a second embedding): which one the HEF expects is unknown."""
    model, _ = textual_model(vocab=20)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((20, 16), np.float32), "type_embedding"))
    model.graph.node.insert(1, helper.make_node("Gather", ["type_embedding", "ids"], ["types"], name="Gather_types"))
    with pytest.raises(ConfigurationError, match="one token-embedding lookup.*found 2"):
        host_weights_from_textual_onnx(model, source="x")
