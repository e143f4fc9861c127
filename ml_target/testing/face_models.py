"""Face models in the layout of Immich's insightface packs, built from numpy weights (no torch).

Immich's `buffalo_l` holds an SCRFD detector (`detection/model.onnx`: input `input.1`
[1,3,H,W] normalised, nine outputs in insightface's order: scores, boxes, keypoints for strides
8/16/32) and a recogniser (`recognition/model.onnx`: input `input.1` [N,3,112,112] normalised
(x - 127.5) / 127.5 RGB, output `683` [N,512]). No package we can install ships those weights, so
the tests, the demo and the benchmarks use ONNX files of the same interface built here with the
`onnx` helper API from seeded random numpy weights. NONE of them is a face model:

- `detector_model`: ignores its input and always emits the heads it was built with
  (`scrfd_heads`): known answers for the decode, letterbox and NMS of both sides of `verify`. The
  values sit on the quantisation grid of the Model Zoo SCRFD HEFs' outputs, so an emulated HEF
  backed by the same file reproduces them exactly (`write_emulated_detector`).
- `recogniser_model`: two strided convolutions, ReLU and a projection to 512: cheap, and sensitive
  to colour order, normalisation and the exact crop, which is what `verify` must catch.
- `iresnet_model`: insightface's IResNet-50 (the architecture of buffalo_l's `w600k_r50`), random
  weights: it costs what the real recogniser costs, for the benchmarks' host CPU figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ml_target.immich_models import recogniser_path
from ml_target.networks import NETWORKS, NetworkSpec

OPSET = 17
DET_SIZE = 640
STRIDES = (8, 16, 32)
ANCHORS = 2
EMBEDDING_DIM = 512
RECOGNISER_INPUT = "input.1"
RECOGNISER_OUTPUT = "683"  # the output name of insightface's w600k_r50.onnx
# Eyes, nose tip and mouth corners as fractions of a face box (brows to lower lip).
LANDMARK_FRACTIONS = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.62], [0.35, 0.82], [0.65, 0.82]])


def _grid(values: np.ndarray, step: float, zp: float = 0.0) -> np.ndarray:
    """Snap to the values a UINT8 edge with this scale and zero point can hold."""
    q = np.clip(np.rint(values / step + zp), 0, 255)
    return ((q - zp) * step).astype(np.float32)


def scrfd_heads(
    faces: Sequence[tuple[tuple[float, float, float, float], int, int]], size: int = DET_SIZE, score: float = 242 / 255
) -> list[np.ndarray]:
    """insightface-ordered SCRFD outputs, each (1, cells * 2, channels), holding `faces`.

    A face is (box in detector-input pixels, stride, anchor): it sits in the cell nearest the box
    centre, on that anchor, with keypoints at fixed proportions of the box. Scores, distances and
    offsets are snapped to the Zoo HEFs' output grids (1/255; 0.05; 0.1 around 128), so an emulated
    HEF hands back exactly these values.
    """
    heads = {s: [np.zeros((1, (size // s) ** 2 * ANCHORS, c), np.float32) for c in (1, 4, 10)] for s in STRIDES}
    for (x1, y1, x2, y2), stride, anchor in faces:
        col, row = round((x1 + x2) / 2 / stride), round((y1 + y2) / 2 / stride)
        cx, cy = col * stride, row * stride
        index = (row * (size // stride) + col) * ANCHORS + anchor
        scores, boxes, points = heads[stride]
        scores[0, index] = _grid(np.array([score]), 1 / 255)
        boxes[0, index] = _grid(np.array([cx - x1, cy - y1, x2 - cx, y2 - cy]) / stride, 0.05)
        keypoints = np.array([x1, y1]) + LANDMARK_FRACTIONS * np.array([x2 - x1, y2 - y1])
        points[0, index] = _grid(((keypoints - [cx, cy]) / stride).ravel(), 0.1, 128)
    return [heads[s][k] for k in range(3) for s in STRIDES]


def _model(nodes, inputs, outputs, initializers=(), name: str = "model") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by every onnxruntime this project supports
    onnx.checker.check_model(model)
    return model


def detector_model(heads: Sequence[np.ndarray]) -> onnx.ModelProto:
    """An SCRFD-shaped detector that ignores its input and emits `heads` (see `scrfd_heads`).

    The outputs are 2-D, (cells * anchors, channels), as in buffalo_l's `det_10g.onnx`: insightface
    0.7.3's `RetinaFace`, which Immich's detector wraps, indexes them without a batch axis.
    """
    nodes, outputs = [], []
    for i, head in enumerate(head.reshape(head.shape[-2:]) for head in heads):
        nodes.append(helper.make_node("Constant", [], [f"out{i}"], value=numpy_helper.from_array(head), name=f"Constant_{i}"))
        outputs.append(helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, list(head.shape)))
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, DET_SIZE, DET_SIZE])
    return _model(nodes, [image], outputs, name="scrfd_stand_in")


def _recogniser_io(batch: str | int) -> tuple[list, list]:
    return (
        [helper.make_tensor_value_info(RECOGNISER_INPUT, TensorProto.FLOAT, [batch, 3, 112, 112])],
        [helper.make_tensor_value_info(RECOGNISER_OUTPUT, TensorProto.FLOAT, [batch, EMBEDDING_DIM])],
    )


def recogniser_model(seed: int = 0, batch: str | int = "batch") -> onnx.ModelProto:
    """A small recogniser-shaped network: (N,3,112,112) -> conv 4/4 -> ReLU -> conv 4/4 -> ReLU -> 512.

    Random, so not a face recogniser; but every output depends on every pixel and channel of the
    crop, so a swapped colour order, another normalisation or a shifted crop changes it. `batch`
    is the input's batch dimension: a name (dynamic, as Immich makes it) or 1 (fixed).
    """
    rng = np.random.default_rng(seed)
    weights = {
        "conv1.weight": rng.normal(0, 0.2, (16, 3, 4, 4)),
        "conv1.bias": rng.normal(0, 0.1, (16,)),
        "conv2.weight": rng.normal(0, 0.1, (8, 16, 4, 4)),
        "conv2.bias": rng.normal(0, 0.1, (8,)),
        "fc.weight": rng.normal(0, 0.1, (8 * 7 * 7, EMBEDDING_DIM)),
    }
    nodes = [
        helper.make_node("Conv", [RECOGNISER_INPUT, "conv1.weight", "conv1.bias"], ["c1"], kernel_shape=[4, 4],
                         strides=[4, 4], name="Conv_0"),
        helper.make_node("Relu", ["c1"], ["r1"], name="Relu_1"),
        helper.make_node("Conv", ["r1", "conv2.weight", "conv2.bias"], ["c2"], kernel_shape=[4, 4], strides=[4, 4],
                         name="Conv_2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="Relu_3"),
        helper.make_node("Flatten", ["r2"], ["flat"], name="Flatten_4"),
        helper.make_node("MatMul", ["flat", "fc.weight"], [RECOGNISER_OUTPUT], name="MatMul_5"),
    ]
    inputs, outputs = _recogniser_io(batch)
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    return _model(nodes, inputs, outputs, initializers, name="recogniser_stand_in")


class _Graph:
    """Accumulates nodes and random initialisers for `iresnet_model`."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"{kind}_{self._count}"

    def constant(self, array: np.ndarray) -> str:
        name = self._name("w")
        self.initializers.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], **attributes) -> str:
        output = self._name(op)
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def conv(self, x: str, cin: int, cout: int, kernel: int, stride: int) -> str:
        weight = self.rng.normal(0, np.sqrt(2.0 / (cin * kernel * kernel)), (cout, cin, kernel, kernel))
        return self.node("Conv", [x, self.constant(weight), self.constant(np.zeros(cout))], kernel_shape=[kernel] * 2,
                         strides=[stride] * 2, pads=[kernel // 2] * 4)

    def batch_norm(self, x: str, channels: int, scale: float = 1.0) -> str:
        parameters = [np.full(channels, scale), np.zeros(channels), np.zeros(channels), np.ones(channels)]
        return self.node("BatchNormalization", [x, *(self.constant(p) for p in parameters)], epsilon=1e-5)

    def prelu(self, x: str, channels: int) -> str:
        return self.node("PRelu", [x, self.constant(np.full((channels, 1, 1), 0.25))])


def iresnet_model(layers: Sequence[int] = (3, 4, 14, 3), seed: int = 0) -> onnx.ModelProto:
    """insightface's IResNet (arcface_torch `iresnet50` for the default layers) with random weights.

    Stem 3x3 conv 64 + BN + PReLU at 112 px; four stages of 64/128/256/512 channels, each starting
    with stride 2, of blocks BN -> conv3x3 -> BN -> PReLU -> conv3x3 -> BN plus the (1x1-conv
    downsampled) input; then BN, flatten, a 512*7*7 -> 512 linear layer and BN. The same
    operations and shapes as buffalo_l's recogniser, so onnxruntime spends the same time on it.
    Residual branches are scaled down so random activations stay finite.
    """
    g = _Graph(seed)
    x = g.prelu(g.batch_norm(g.conv(RECOGNISER_INPUT, 3, 64, 3, 1), 64), 64)
    channels = 64
    for blocks, planes in zip(layers, (64, 128, 256, 512)):
        for block in range(blocks):
            stride = 2 if block == 0 else 1
            branch = g.batch_norm(x, channels)
            branch = g.prelu(g.batch_norm(g.conv(branch, channels, planes, 3, 1), planes), planes)
            branch = g.batch_norm(g.conv(branch, planes, planes, 3, stride), planes, scale=0.1)
            shortcut = x
            if stride != 1 or channels != planes:
                shortcut = g.batch_norm(g.conv(x, channels, planes, 1, stride), planes)
            x = g.node("Add", [branch, shortcut])
            channels = planes
    x = g.node("Flatten", [g.batch_norm(x, channels)])
    weight = g.rng.normal(0, np.sqrt(1.0 / (channels * 49)), (channels * 49, EMBEDDING_DIM))
    x = g.node("Gemm", [x, g.constant(weight), g.constant(np.zeros(EMBEDDING_DIM))])
    features = g.batch_norm(x, EMBEDDING_DIM)
    g.nodes.append(helper.make_node("Identity", [features], [RECOGNISER_OUTPUT], name="features"))
    inputs, outputs = _recogniser_io("batch")
    return _model(g.nodes, inputs, outputs, g.initializers, name="iresnet")


def save(model: onnx.ModelProto, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_face_pack(cache: Path, heads: Sequence[np.ndarray], pack: str = "buffalo_l",
                    recogniser: onnx.ModelProto | None = None) -> Path:
    """`<cache>/facial-recognition/<pack>/{detection,recognition}/model.onnx`, as Immich caches a pack."""
    base = Path(cache) / "facial-recognition" / pack
    save(detector_model(heads), base / "detection" / "model.onnx")
    save(recogniser or recogniser_model(), Path(cache) / recogniser_path(pack))
    return base


def write_recogniser(models_dir: Path, pack: str = "buffalo_l", model: onnx.ModelProto | None = None) -> Path:
    """The pack's recogniser where the worker loads it (`facial-recognition/<pack>/recognition/model.onnx`)."""
    return save(model or recogniser_model(), Path(models_dir) / recogniser_path(pack))


def write_emulated_detector(models_dir: Path, detector_onnx: Path, hef: str = "scrfd_10g", arch: str = "hailo8") -> Path:
    """An emulated SCRFD HEF computing with an insightface-layout detector ONNX.

    The HEF's in-network normalisation ((x - 127.5) / 128, RGB) is folded in front of the ONNX, as
    the Zoo compiles it; the nine ONNX outputs (scores, boxes, keypoints per stride) are mapped onto
    the HEF's edges by stride and role.
    """
    from ml_target.hailo.emulator.models_dir import write_hef

    spec: NetworkSpec = NETWORKS[hef]
    (edge,) = spec.inputs
    outputs = {}
    for level in range(len(STRIDES)):
        for role in range(3):  # score, box, keypoints: the spec's order within a stride
            onnx_index = role * len(STRIDES) + level
            outputs[spec.vstream(spec.outputs[3 * level + role])] = {"name": f"out{onnx_index}"}
    mean, std = spec.normalization
    compute = {
        "kind": "onnx",
        "path": str(Path(detector_onnx).resolve()),
        "normalization": {"mean": list(mean), "std": list(std)},
        "inputs": {spec.vstream(edge): {"name": "input.1", "transpose": [0, 3, 1, 2]}},
        "outputs": outputs,
    }
    return write_hef(Path(models_dir) / f"{hef}.hef", spec=spec, compute=compute, hw_arch=arch)
