"""Textual ONNX files shaped like Immich's open_clip exports, built from numpy weights (no torch).

Immich's `textual/model.onnx` is open_clip's `encode_text(text, normalize=True)`: token lookup
(`Gather`), `+ positional_embedding` (`Add` of an initialiser), the transformer, `ln_final`
(`LayerNormalization`), pooling, the projection and an L2 normalisation. The files built here
have that outer structure around a stand-in middle (one per-token linear layer and tanh instead of
the transformer): enough for `fetch-models`' extraction (`ml_target.text.onnx_host`) and its
download tests, with the weights returned for comparison. The pooling takes the first EOS
position (argmax of the ids) as CLIP does; `projection` selects how the linear layer is exported:
`matmul` (open_clip's `x @ text_projection`), `gemm` (a `nn.Linear` with bias: SigLIP's head, stored
(out, in) with transB=1) or `matmul_add` (MatMul then a bias `Add`); `positions` whether the
position table is added as it is (`add`, open_clip) or looked up by constant ids (`gather`,
transformers).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def textual_model(
    *,
    vocab: int,
    width: int = 16,
    context: int = 77,
    dim: int = 16,
    projection: str = "matmul",
    positions: str = "add",
    eps: float = 1e-5,
    seed: int = 0,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """(model, weights in the host format's names and OpenAI orientation)."""
    rng = np.random.default_rng(seed)
    weights = {
        "token_embedding": rng.normal(0, 1, (vocab, width)).astype(np.float32),
        "position_embedding": rng.normal(0, 0.5, (context, width)).astype(np.float32),
        "final_ln_weight": rng.normal(1, 0.2, width).astype(np.float32),
        "final_ln_bias": rng.normal(0, 0.2, width).astype(np.float32),
        "text_projection": rng.normal(0, 1 / np.sqrt(width), (width, dim)).astype(np.float32),
    }
    if projection != "matmul":
        weights["text_projection_bias"] = rng.normal(0, 0.1, dim).astype(np.float32)
    middle = rng.normal(0, 1 / np.sqrt(width), (width, width)).astype(np.float32)
    inits = {
        "token_embedding.weight": weights["token_embedding"],
        "positional_embedding": weights["position_embedding"],
        "transformer.weight": middle,
        "ln_final.weight": weights["final_ln_weight"],
        "ln_final.bias": weights["final_ln_bias"],
        "flat_shape": np.array([-1, width], np.int64),
    }
    nodes = [
        helper.make_node("Cast", ["text"], ["ids"], to=TensorProto.INT64, name="Cast_0"),
        helper.make_node("Gather", ["token_embedding.weight", "ids"], ["tokens"], name="Gather_1"),
    ]
    if positions == "add":
        nodes.append(helper.make_node("Add", ["tokens", "positional_embedding"], ["embedded"], name="Add_2"))
    elif positions == "gather":  # transformers: position_embedding(position_ids), ids a constant 0..L-1
        inits["position_ids"] = np.arange(context, dtype=np.int64)[None]
        nodes += [
            helper.make_node("Gather", ["positional_embedding", "position_ids"], ["positions"], name="Gather_2"),
            helper.make_node("Add", ["tokens", "positions"], ["embedded"], name="Add_2"),
        ]
    else:
        raise ValueError(f"unknown position export {positions!r}")
    nodes += [
        helper.make_node("MatMul", ["embedded", "transformer.weight"], ["mixed"], name="MatMul_3"),
        helper.make_node("Tanh", ["mixed"], ["hidden"], name="Tanh_4"),
        helper.make_node("LayerNormalization", ["hidden", "ln_final.weight", "ln_final.bias"], ["normed"], axis=-1,
                         epsilon=eps, name="LayerNormalization_5"),
        # first EOS = argmax of the ids (CLIP's EOS has the largest id); flat index b * L + position
        helper.make_node("ArgMax", ["ids"], ["eos"], axis=1, keepdims=0, name="ArgMax_6"),
        helper.make_node("Reshape", ["normed", "flat_shape"], ["rows"], name="Reshape_7"),
        helper.make_node("Gather", ["rows", "eos"], ["pooled"], axis=0, name="Gather_8"),
    ]
    if projection == "matmul":
        inits["text_projection"] = weights["text_projection"]
        nodes.append(helper.make_node("MatMul", ["pooled", "text_projection"], ["projected"], name="MatMul_9"))
    elif projection == "gemm":
        inits["text_projection.weight"] = np.ascontiguousarray(weights["text_projection"].T)
        inits["text_projection.bias"] = weights["text_projection_bias"]
        nodes.append(helper.make_node("Gemm", ["pooled", "text_projection.weight", "text_projection.bias"], ["projected"],
                                      transB=1, name="Gemm_9"))
    elif projection == "matmul_add":
        inits["onnx::MatMul_99"] = weights["text_projection"]
        inits["text_projection.bias"] = weights["text_projection_bias"]
        nodes += [
            helper.make_node("MatMul", ["pooled", "onnx::MatMul_99"], ["linear"], name="MatMul_9"),
            helper.make_node("Add", ["text_projection.bias", "linear"], ["projected"], name="Add_10"),
        ]
    else:
        raise ValueError(f"unknown projection export {projection!r}")
    nodes += [
        helper.make_node("ReduceL2", ["projected"], ["norm"], axes=[1], keepdims=1, name="ReduceL2_11"),
        helper.make_node("Div", ["projected", "norm"], ["embedding"], name="Div_12"),
    ]
    graph = helper.make_graph(
        nodes,
        "encode_text",
        [helper.make_tensor_value_info("text", TensorProto.INT32, [1, context])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, dim])],
        initializer=[numpy_helper.from_array(value, name) for name, value in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, weights
