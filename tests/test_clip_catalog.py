"""The CLIP catalog: backends fit their HEFs, and the Immich model-name policy."""

from __future__ import annotations

import math

import pytest

from ml_target.catalog import BACKENDS, IMMICH_CLIP_DIMS, backend_for_setting, check_model_name
from ml_target.config import CLIP_BACKENDS, Settings
from ml_target.errors import ModelNotServed


def test_every_setting_selects_a_backend_and_back():
    assert set(CLIP_BACKENDS.values()) == set(BACKENDS)
    for setting in CLIP_BACKENDS:
        assert backend_for_setting(setting).setting == setting
    assert backend_for_setting(Settings().clip_backend).id == "clip_vit_b_32"  # a fresh Immich needs no change


@pytest.mark.parametrize("backend", BACKENDS.values(), ids=lambda b: b.id)
def test_backend_declarations_fit_the_declared_hefs(backend):
    image, text = backend.image_network, backend.text_network
    assert image.inputs[0].shape == (backend.image_size, backend.image_size, 3)
    assert math.prod(image.outputs[0].shape) == backend.dim
    width = text.inputs[0].shape[-1]
    assert math.prod(text.inputs[0].shape) == backend.context_length * width
    out = math.prod(text.outputs[0].shape)
    assert out == (backend.dim if backend.text_cut.pooling == "hef" else backend.context_length * width)
    assert text.priority > image.priority  # a user's search beats a library scan
    for name in backend.immich_names:
        assert IMMICH_CLIP_DIMS[name] == backend.dim


def test_faithful_names_follow_hailo_models_section_4():
    assert {b.id: b.immich_names for b in BACKENDS.values()} == {
        "clip_vit_b_32": ("ViT-B-32__openai",),
        "clip_vit_b_16": ("ViT-B-16__openai",),
        "siglip_b_16": ("ViT-B-16-SigLIP__webli",),
        "siglip2_b_32_256": ("ViT-B-32-SigLIP2-256__webli",),
        "tinyclip_vit_39m": (),
    }


def test_immich_table_has_all_58_models_with_their_dimensions():
    assert len(IMMICH_CLIP_DIMS) == 58
    assert IMMICH_CLIP_DIMS["RN50x4__openai"] == 640
    assert IMMICH_CLIP_DIMS["ViT-gopt-16-SigLIP2-384__webli"] == 1536
    assert IMMICH_CLIP_DIMS["nllb-clip-large-siglip__mrl"] == 1152
    assert set(IMMICH_CLIP_DIMS.values()) == {512, 640, 768, 1024, 1152, 1536}


def test_a_faithful_name_is_served():
    check_model_name(BACKENDS["siglip_b_16"], "ViT-B-16-SigLIP__webli", serve_any_model_name=False)


def test_a_name_served_by_another_backend_is_refused_with_both_fixes():
    with pytest.raises(ModelNotServed) as caught:
        check_model_name(BACKENDS["clip_vit_b_32"], "ViT-B-16-SigLIP__webli", serve_any_model_name=False)
    message = str(caught.value)
    assert caught.value.status == 400
    assert "'ViT-B-16-SigLIP__webli'" in message and "CLIP_BACKEND=vit-b-32" in message
    assert "set CLIP_BACKEND=siglip" in message
    assert "change Immich's smart-search model to ViT-B-32__openai" in message
    assert "CLIP_SERVE_ANY_MODEL_NAME" not in message  # 768-d: the opt-in could not help


def test_a_same_dimension_name_mentions_the_opt_in():
    with pytest.raises(ModelNotServed, match="set CLIP_SERVE_ANY_MODEL_NAME=true"):
        check_model_name(BACKENDS["clip_vit_b_32"], "ViT-B-32__laion2b-s34b-b79k", serve_any_model_name=False)


def test_the_opt_in_serves_any_immich_name_of_the_same_dimension():
    check_model_name(BACKENDS["clip_vit_b_32"], "XLM-Roberta-Large-Vit-B-32", serve_any_model_name=True)
    check_model_name(BACKENDS["siglip2_b_32_256"], "ViT-L-14__openai", serve_any_model_name=True)


def test_the_opt_in_still_refuses_another_dimension():
    with pytest.raises(ModelNotServed, match="stores 768-d vectors and this backend produces 512-d ones"):
        check_model_name(BACKENDS["clip_vit_b_32"], "ViT-B-16-SigLIP__webli", serve_any_model_name=True)


def test_unknown_names_are_refused_even_with_the_opt_in():
    with pytest.raises(ModelNotServed, match="not a CLIP model known to Immich"):
        check_model_name(BACKENDS["clip_vit_b_32"], "ViT-Z-99__nowhere", serve_any_model_name=True)


def test_tinyclip_needs_the_opt_in():
    tiny = BACKENDS["tinyclip_vit_39m"]
    with pytest.raises(ModelNotServed, match="TinyCLIP has no Immich twin") as caught:
        check_model_name(tiny, "ViT-B-32__openai", serve_any_model_name=False)
    assert "set CLIP_BACKEND=vit-b-32" in str(caught.value)
    check_model_name(tiny, "ViT-B-32__openai", serve_any_model_name=True)
