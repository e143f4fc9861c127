"""Export the host-side text weights of a CLIP backend from a Hugging Face checkpoint directory.

Run once, on any machine with the checkpoint (it needs torch and transformers, not a Hailo device):

    python scripts/export_clip_host_weights.py --checkpoint ./clip-vit-base-patch32 \
        --backend clip_vit_b_32 --out models/clip_vit_b_32 \
        [--tokenizer-dir ./immich-ViT-B-32__openai/textual] [--dtype float16]

The checkpoint is a `save_pretrained` directory of a CLIPModel / SiglipModel (e.g. a clone of
openai/clip-vit-base-patch32, google/siglip-base-patch16-224). The tokenizer files are copied from
`--tokenizer-dir`, default the checkpoint; Immich's own `textual/` folder (Hugging Face repo
immich-app/<model name>) is the faithful source, because Immich tokenises with exactly those files
(and google/siglip checkpoints ship only a SentencePiece model, no tokenizer.json). The output
format is documented in ml_target/text/host_weights.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ml_target.catalog import BACKENDS
from ml_target.errors import ConfigurationError
from ml_target.text.host_export import export_host_assets


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="Hugging Face model directory")
    parser.add_argument("--backend", required=True, choices=sorted(BACKENDS), help="catalog id")
    parser.add_argument("--out", type=Path, required=True, help="normally <models_dir>/<backend>")
    parser.add_argument("--tokenizer-dir", type=Path, help="folder with tokenizer.json + tokenizer_config.json")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="token table dtype")
    return parser.parse_args(argv)


def _load_state(checkpoint: Path) -> tuple[dict, float]:
    """Full state dict as numpy arrays and the text LayerNorm epsilon of a transformers checkpoint."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(checkpoint))
    state = {key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}
    return state, float(model.config.text_config.layer_norm_eps)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    backend = BACKENDS[args.backend]
    state, eps = _load_state(args.checkpoint)
    try:
        summary = export_host_assets(
            state,
            backend,
            args.out,
            tokenizer_dir=args.tokenizer_dir or args.checkpoint,
            layer_norm_eps=eps,
            source=str(args.checkpoint),
            embedding_dtype=args.dtype,
        )
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if summary["pad_token"] != summary["expected_pad_token"]:
        print(
            f"note: pad token is {summary['pad_token']!r}, the catalog expected {summary['expected_pad_token']!r}; "
            "the file decides, as in Immich",
            file=sys.stderr,
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
