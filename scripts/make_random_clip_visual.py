#!/usr/bin/env python3
"""Write a randomly initialised, real-size CLIP ViT-B/32 image encoder as an Immich-style visual ONNX.

For `python -m ml_target bench decode-fidelity` on a machine without Immich's own
`ViT-B-32__openai/visual/model.onnx`: the same architecture and input (1x3x224x224 float32, CLIP
normalisation applied by the caller) at the real width, depth and patch size, so the measurement
sees a real-size network's sensitivity to pixel changes. Its weights are random (seeded), so it is
not a substitute for the trained model, only for its shape. Needs torch and transformers (not
installed by any of this project's install paths); writes ~350 MB.

    python scripts/make_random_clip_visual.py OUT.onnx [--seed 0]
"""

from __future__ import annotations

import argparse

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection


class _Visual(torch.nn.Module):
    def __init__(self, model: CLIPVisionModelWithProjection) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=image).image_embeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    config = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              image_size=224, patch_size=32, projection_dim=512)
    model = _Visual(CLIPVisionModelWithProjection(config).eval())
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), args.out, input_names=["image"],
                          output_names=["embedding"], opset_version=17, dynamo=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
