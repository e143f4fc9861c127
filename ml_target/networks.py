"""The Hailo Model Zoo networks this worker drives, as the HEFs present them.

This is a declaration of what each HEF is expected to look like (edge names, shapes, types,
in-network normalisation, published speed), with its evidence in docs/hardware-evidence.md. The
runtime never trusts it for quantisation or edge names: real QPs and edges are read from the HEF
at run time, outputs matched by shape and role, and `doctor` compares the two. The declared QPs
here are plausible values used when writing *emulated* HEFs, and the timing table is the
emulator's model of the device (DESIGN.md).

Timing, one regime for every entry: the Model Zoo's published throughput, fitted as a + b*B ms per
burst from its batch-1 and batch-8 FPS (a = 0 where both are equal: single-context networks); for
the Hailo-8 and Hailo-8L the Zoo v2.18 figures, for the Hailo-10H the Zoo v5.3.0 HAILO10H pages
(`_zoo_fit`, docs/hardware-evidence.md §B.3) — derived, not measured on a card. The Zoo measured on
a PCIe Gen3 x4 host; a card on a narrower link is slower (a third-party Hailo-8 on Gen3 x2 measured
up to 3.7x longer per frame, docs/hardware-evidence.md §3; the Raspberry Pi AI HAT+ 2 runs its
Hailo-10H on one lane).

Architectures. Every network exists for hailo8, hailo8l and hailo10h under the same name; the
Hailo-10H builds come from Zoo v5.x (HailoRT 5.x), the others from v2.18 (HailoRT 4.x). Where a
10H build's edges differ they are declared in `arch_inputs` (SigLIP/SigLIP2 text: 1x64x768 instead
of 8x8x768, cfg/networks/*.yaml @ v5.2.0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

ZOO_VERSION = "v2.18.0"
# The Zoo release of each build folder: v2.18 is the last for HailoRT 4.x (Hailo-8/8L); the 10H
# builds are pinned to the HailoRT 5.x minor they are meant for (strict HEF versioning, 5.x).
ZOO_VERSIONS = {"hailo8": ZOO_VERSION, "hailo8l": ZOO_VERSION, "hailo10h": "v5.3.0"}
ZOO_URL = "https://hailo-model-zoo.s3.eu-west-2.amazonaws.com/ModelZoo/Compiled/{version}/{arch}/{hef}.hef"
BUILD_ARCHES = tuple(ZOO_VERSIONS)

CLIP_MEAN_255 = (122.7709383, 116.7460125, 104.09373615)
CLIP_STD_255 = (68.5005327, 66.6321579, 70.32316305)
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Quant:
    """HailoRT quantisation parameters: float = (q - zp) * scale; limvals clip before quantising."""

    scale: float = 1.0
    zp: float = 0.0
    min: float = 0.0
    max: float = 255.0


@dataclass(frozen=True)
class Edge:
    """One input or output vstream as `get_*_vstream_infos()` would report it."""

    layer: str
    shape: tuple[int, ...]
    type: str = "UINT8"
    order: str = "NHWC"
    quant: Quant = field(default_factory=Quant)


@dataclass(frozen=True)
class NetworkSpec:
    """A HEF of the Model Zoo: file stem, network group, edges, and how the emulator times it."""

    hef: str
    inputs: tuple[Edge, ...]
    outputs: tuple[Edge, ...]
    multi_context: bool
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None
    timing_ms: dict[str, tuple[float, float]]
    batch_size: int = 8
    priority: int = 16
    # Outputs in the edge's native integers, dequantised by the caller where it needs floats: for a
    # large output of which the host reads little (CTC keeps one class per time step), this skips
    # libhailort's dequantisation of every element and a buffer four times the size.
    raw_outputs: bool = False
    # Edges of another architecture's build where they differ from `inputs` (by build folder).
    arch_inputs: Mapping[str, tuple[Edge, ...]] = field(default_factory=dict)

    @property
    def group(self) -> str:
        """HailoRT's network-group name: the HEF name with dots turned into underscores."""
        return self.hef.replace(".", "_")

    def vstream(self, edge: Edge) -> str:
        return f"{self.group}/{edge.layer}"

    def url(self, arch: str, version: str | None = None) -> str:
        """The Model Zoo URL of the `arch` build (its pinned Zoo release unless `version` is given)."""
        return ZOO_URL.format(version=version or ZOO_VERSIONS[arch], arch=arch, hef=self.hef)

    def for_arch(self, arch: str) -> NetworkSpec:
        """This network as the `arch` build presents it (its own edges where they differ)."""
        inputs = self.arch_inputs.get(arch)
        return self if inputs is None else replace(self, inputs=inputs)


def build_arch(chips: Iterable[str]) -> str:
    """The build folder whose HEFs run on every one of these chips, so that every card returns the
    same vectors: hailo8 for Hailo-8s alone; hailo8l as soon as a Hailo-8L is present (a Hailo-8
    accepts 8L HEFs: HW_ARCH__HAILO8L -> {HAILO8L, HAILO8}, device_internal.cpp); hailo10h for 10Hs."""
    chips = set(chips)
    if chips and chips <= {"hailo8"}:
        return "hailo8"
    if chips and chips <= {"hailo8", "hailo8l"}:
        return "hailo8l"
    if chips == {"hailo10h"}:
        return "hailo10h"
    raise ValueError(f"no one build runs on {sorted(chips)}: a Hailo-10H needs its own worker (HailoRT 5.x)")


def _zoo_fit(fps_1: float, fps_8: float) -> tuple[float, float]:
    """(a, b) ms of a burst of B frames costing a + b*B, from the Zoo's batch-1 and batch-8 FPS.

    b = (8000/FPS8 - 1000/FPS1)/7 and a = 1000/FPS1 - b; when a comes out below 0.5 ms or FPS8 <= FPS1
    (single-context networks) the burst has no fixed cost: a = 0, b = 1000/mean(FPS1, FPS8).
    """
    b = (8000.0 / fps_8 - 1000.0 / fps_1) / 7.0
    a = 1000.0 / fps_1 - b
    if fps_8 <= fps_1 or a < 0.5:
        return 0.0, round(2000.0 / (fps_1 + fps_8), 3)
    return round(a, 2), round(b, 3)


def _u8(scale: float, zp: float) -> Quant:
    return Quant(scale=scale, zp=zp, min=(0 - zp) * scale, max=(255 - zp) * scale)


def _u16(scale: float, zp: float) -> Quant:
    return Quant(scale=scale, zp=zp, min=(0 - zp) * scale, max=(65535 - zp) * scale)


PIXELS = Quant()
TEXT_PRIORITY = 24  # above the default 16 of image networks: a user's search beats a library scan


def _scrfd(hef: str, layers: tuple[str, ...], a_b: dict[str, tuple[float, float]]) -> NetworkSpec:
    outputs = []
    for (size, _stride), names in zip(((80, 8), (40, 16), (20, 32)), (layers[0:3], layers[3:6], layers[6:9])):
        score, box, kps = names
        outputs += [
            Edge(score, (size, size, 2), quant=_u8(1 / 255, 0)),
            Edge(box, (size, size, 8), quant=_u8(0.05, 0)),
            Edge(kps, (size, size, 20), quant=_u8(0.1, 128)),
        ]
    return NetworkSpec(
        hef=hef,
        inputs=(Edge("input_layer1", (640, 640, 3), quant=PIXELS),),
        outputs=tuple(outputs),
        multi_context=False,
        normalization=((127.5,) * 3, (128.0,) * 3),
        timing_ms=a_b,
    )


def _arcface(hef: str, multi: bool, a_b: dict[str, tuple[float, float]]) -> NetworkSpec:
    return NetworkSpec(
        hef=hef,
        inputs=(Edge("input_layer1", (112, 112, 3), quant=PIXELS),),
        outputs=(Edge("fc1", (512,), order="NC", quant=_u8(0.02, 128)),),
        multi_context=multi,
        normalization=((127.5,) * 3, (127.5,) * 3),
        timing_ms=a_b,
    )


def _image_encoder(hef: str, size: int, dim: int, out_type: str, norm, a_b, out_quant: Quant | None = None) -> NetworkSpec:
    quant = out_quant or (_u16(1 / 16384, 32768) if out_type == "UINT16" else _u8(1 / 64, 128))
    return NetworkSpec(
        hef=hef,
        inputs=(Edge("input_layer1", (size, size, 3), quant=PIXELS),),
        outputs=(Edge("output_layer1", (1, 1, dim), type=out_type, quant=quant),),
        multi_context=True,
        normalization=norm,
        timing_ms=a_b,
    )


def _text_encoder(
    hef: str, in_shape, out_shape, out_layer: str, out_type: str, a_b,
    in_quant: Quant | None = None, out_quant: Quant | None = None, h10_in_shape=None,
) -> NetworkSpec:
    out_quant = out_quant or (_u16(1 / 4096, 32768) if out_type == "UINT16" else _u8(1 / 16, 128))
    in_quant = in_quant or _u16(1 / 16384, 32768)
    arch_inputs = {} if h10_in_shape is None else {
        "hailo10h": (Edge("input_layer1", h10_in_shape, type="UINT16", quant=in_quant),)
    }
    return NetworkSpec(
        hef=hef,
        inputs=(Edge("input_layer1", in_shape, type="UINT16", quant=in_quant),),
        outputs=(Edge(out_layer, out_shape, type=out_type, quant=out_quant),),
        multi_context=True,
        normalization=None,
        timing_ms=a_b,
        priority=TEXT_PRIORITY,
        arch_inputs=arch_inputs,
    )


def _t(h8: tuple[float, float], h8l: tuple[float, float], h10: tuple[float, float]) -> dict[str, tuple[float, float]]:
    """Timing per profile; `h10` = (FPS batch 1, FPS batch 8) of the Zoo v5.3.0 HAILO10H page."""
    return {"hailo8": h8, "hailo8l": h8l, "hailo10h": _zoo_fit(*h10)}


CLIP_NORM = (CLIP_MEAN_255, CLIP_STD_255)
HALF_NORM = ((127.5,) * 3, (127.5,) * 3)

NETWORKS: dict[str, NetworkSpec] = {
    spec.hef: spec
    for spec in (
        _scrfd(
            "scrfd_2.5g",
            ("conv42", "conv43", "conv44", "conv49", "conv50", "conv51", "conv55", "conv56", "conv57"),
            _t((0.0, 0.946), (0.0, 3.22), (538, 526)),
        ),
        _scrfd(
            "scrfd_10g",
            ("conv41", "conv42", "conv43", "conv49", "conv50", "conv51", "conv56", "conv57", "conv58"),
            _t((0.0, 2.27), (0.0, 6.71), (290, 290)),
        ),
        _arcface("arcface_r50", True, _t((7.19, 1.66), (8.5, 2.28), (202, 528))),
        _arcface("arcface_mobilefacenet", False, _t((0.0, 0.193), (0.0, 0.60), (3921, 3949))),
        _image_encoder("clip_vit_b_32_image_encoder", 224, 512, "UINT8", CLIP_NORM, _t((27.2, 1.94), (29.2, 4.05), (81.6, 351))),
        _text_encoder(
            "clip_vit_b_32_text_encoder", (1, 77, 512), (1, 77, 512), "normalization25", "UINT8",
            _t((27.0, 3.93), (26.1, 7.11), (48.8, 99.0)),
        ),
        _image_encoder("clip_vit_b_16_image_encoder", 224, 512, "UINT8", CLIP_NORM, _t((29.9, 4.66), (34.4, 14.6), (51.5, 158))),
        _text_encoder(
            "clip_vit_b_16_text_encoder", (1, 77, 512), (1, 77, 512), "normalization25", "UINT8",
            _t((25.2, 4.61), (27.2, 11.3), (46.2, 106)),
        ),
        # QPs read on a Hailo-8 from the v2.18.0 HEFs by a third party (hardware-evidence §1.9, §1.10).
        _image_encoder(
            "siglip_b_16_image_encoder", 224, 768, "UINT16", HALF_NORM, _t((56.4, 17.1), (67.7, 60.5), (33.0, 80.1)),
            out_quant=_u16(0.00032554997596889734, 9506),
        ),
        _text_encoder(
            "siglip_b_16_text_encoder", (8, 8, 768), (1, 1, 768), "output_layer1", "UINT16",
            _t((55.3, 5.3), (53.2, 20.9), (34.3, 62.0)),
            in_quant=_u16(0.000125956823467277, 19290), out_quant=_u16(0.0006467350176535547, 17980),
            h10_in_shape=(1, 64, 768),
        ),
        _image_encoder(
            "siglip2_b_32_256_image_encoder", 256, 768, "UINT16", HALF_NORM, _t((55.4, 6.34), (50.4, 41.3), (64.5, 223))
        ),
        _text_encoder(
            "siglip2_b_32_256_text_encoder", (8, 8, 768), (1, 1, 768), "output_layer1", "UINT16",
            _t((54.9, 5.35), (56.4, 21.1), (34.2, 61.9)), h10_in_shape=(1, 64, 768),
        ),
        _image_encoder(
            # UINT16 output: inferred from the compile recipe's 16-bit final projection (hardware-evidence §1.13).
            "tinyclip_vit_39m_16_text_19m_yfcc15m_image_encoder", 224, 512, "UINT16", CLIP_NORM,
            _t((19.6, 2.96), (27.9, 6.96), (89.3, 276)),
        ),
        _text_encoder(
            # UINT16: the cut ends at a 16-bit residual Add (inferred, hardware-evidence §1.14); name not dumped.
            "tinyclip_vit_39m_16_text_19m_yfcc15m_text_encoder", (1, 77, 512), (1, 77, 512), "output_layer1",
            "UINT16", _t((12.1, 2.54), (14.7, 3.32), (91.7, 210)),
            in_quant=_u16(3.146522067254409e-05, 15216),  # read on a Hailo-8 (v2.17.0 HEF), hardware-evidence §1.14
        ),
        NetworkSpec(
            hef="paddle_ocr_v5_mobile_detection",
            inputs=(Edge("input_layer1", (544, 960, 3), quant=PIXELS),),
            outputs=(Edge("output_layer1", (544, 960, 1), quant=_u8(1 / 255, 0)),),
            multi_context=True,
            normalization=(IMAGENET_MEAN_255, IMAGENET_STD_255),
            timing_ms=_t((21.6, 27.2), (16.1, 38.8), (22.5, 40.8)),
            batch_size=4,
        ),
        NetworkSpec(
            hef="paddle_ocr_v5_mobile_recognition",
            inputs=(Edge("input_layer1", (48, 320, 3), quant=PIXELS),),
            outputs=(Edge("output_layer1", (1, 40, 18385), quant=_u8(1 / 255, 0)),),
            multi_context=True,
            raw_outputs=True,
            normalization=HALF_NORM,
            timing_ms=_t((9.6, 1.35), (10.4, 2.07), (127, 402)),
        ),
    )
}
