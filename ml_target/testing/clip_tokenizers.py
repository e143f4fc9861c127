"""Small tokenizer.json files shaped like the ones Immich's CLIP and SigLIP models ship, built offline.

Tests and the emulator demo need real `tokenizers` files without downloading any: a byte-level BPE
with CLIP's `<|startoftext|> ... <|endoftext|>` template and lower-casing, and a SentencePiece-like
Unigram (Metaspace) with `</s>` appended, `<pad>`=0 and `</s>`=1 like SigLIP's T5 vocabulary. They are
trained on a fixed corpus, so the same call always writes the same files. They stand in for the real
vocabularies only in tests and demos.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
SIGLIP_PAD, SIGLIP_EOS, SIGLIP_UNK = "<pad>", "</s>", "<unk>"

CORPUS = (
    "a photo of a dog on the beach at sunset",
    "a cat sleeping on a red sofa in the living room",
    "children playing football in the park on a sunny day",
    "snow covered mountains and a frozen lake in winter",
    "birthday cake with candles, friends and family at the party",
    "a city street at night with cars, lights and rain",
    "wedding photos of the bride and groom dancing",
    "boats in the harbour, seagulls flying over the sea",
    "a plate of pasta with tomato sauce and basil",
    "hiking in the forest with a backpack and a map",
    "Grandma's garden: roses, tulips & sunflowers!",
    "the Eiffel Tower in Paris, 2019 - holiday trip",
)


def _corpus(corpus: tuple[str, ...], repeat: int = 4) -> list[str]:
    return [line for line in corpus for _ in range(repeat)]


def clip_like_tokenizer(vocab_size: int = 400, corpus: tuple[str, ...] = CORPUS) -> Tokenizer:
    """Byte-level BPE with CLIP's normaliser, special tokens and post-processor template."""
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[CLIP_BOS, CLIP_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(corpus), trainer=trainer)
    bos, eos = tokenizer.token_to_id(CLIP_BOS), tokenizer.token_to_id(CLIP_EOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLIP_BOS} $A {CLIP_EOS}", special_tokens=[(CLIP_BOS, bos), (CLIP_EOS, eos)]
    )
    return tokenizer


def siglip_like_tokenizer(*, pad: str = SIGLIP_PAD, eos: str = SIGLIP_EOS, corpus: tuple[str, ...] = CORPUS) -> Tokenizer:
    """Unigram with Metaspace pre-tokenisation and EOS appended; ids pad=0, EOS=1, `<unk>`=2.

    The defaults are SigLIP's T5 names (`<pad>`, `</s>`); SigLIP2's Gemma vocabulary calls EOS `<eos>`.
    The vocabulary is built directly (whole corpus words score above any spelling in characters)
    rather than trained, because Unigram training is not reproducible run to run.
    """
    words = sorted({word for line in corpus for word in line.lower().split()})
    characters = sorted({c for line in corpus for c in line.lower() if not c.isspace()} | set(string.ascii_lowercase + string.digits))
    vocab = [(pad, 0.0), (eos, 0.0), (SIGLIP_UNK, 0.0), ("▁", -8.0)]
    vocab += [(f"▁{word}", -4.0 - 0.01 * i) for i, word in enumerate(words)]
    vocab += [(c, -10.0) for c in characters] + [(f"▁{c}", -9.5) for c in characters]
    scores: dict[str, float] = {}
    for piece, score in vocab:
        scores.setdefault(piece, score)  # a corpus word keeps its word score over its character spelling
    tokenizer = Tokenizer(models.Unigram(list(scores.items()), unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.add_special_tokens([pad, eos, SIGLIP_UNK])
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, 1)])
    return tokenizer


def write_tokenizer(directory: Path, tokenizer: Tokenizer, *, pad_token: str, context_length: int) -> None:
    """Write `tokenizer.json` and a minimal `tokenizer_config.json` naming the pad token, as Immich reads them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"pad_token": pad_token, "model_max_length": context_length, "stand_in": True}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
