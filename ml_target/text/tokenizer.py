"""Tokenisation as Immich does it: the model's own `tokenizer.json` through the `tokenizers` library.

Special tokens (BOS/EOS) come from the file's post-processor, truncation to the context length
keeps room for them, and every sequence is padded to exactly the context length with the pad token
named in `tokenizer_config.json`. Using the same file and library as Immich, rather than a
re-implementation of CLIP BPE or SentencePiece, is what makes the ids identical.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ml_target.errors import ConfigurationError


@dataclass(frozen=True)
class TokenIds:
    """One tokenised query: `ids` (context_length,) int32, padded; `eos_id` of this tokenizer."""

    ids: np.ndarray
    eos_id: int


class ImmichTokenizer:
    """A `tokenizers.Tokenizer` configured like Immich's textual encoder (truncate, then pad)."""

    def __init__(self, tokenizer: Tokenizer, *, context_length: int, pad_token: str, eos_token: str) -> None:
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ConfigurationError(f"pad token {pad_token!r} is not in the tokenizer's vocabulary")
        eos_id = tokenizer.token_to_id(eos_token)
        if eos_id is None:
            raise ConfigurationError(f"end-of-text token {eos_token!r} is not in the tokenizer's vocabulary")
        tokenizer.enable_truncation(max_length=context_length)
        tokenizer.enable_padding(length=context_length, pad_id=pad_id, pad_token=pad_token)
        self._tokenizer = tokenizer
        self.context_length = context_length
        self.pad_id = pad_id
        self.eos_id = eos_id
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_files(cls, directory: Path, *, context_length: int, eos_token: str) -> ImmichTokenizer:
        """Load `tokenizer.json` and the pad token of `tokenizer_config.json` from `directory`."""
        directory = Path(directory)
        tokenizer_file = directory / "tokenizer.json"
        config_file = directory / "tokenizer_config.json"
        for path in (tokenizer_file, config_file):
            if not path.is_file():
                raise ConfigurationError(
                    f"{path} is missing; `python -m ml_target fetch-models` copies tokenizer.json and "
                    "tokenizer_config.json from Immich's model (scripts/export_clip_host_weights.py from a checkpoint)"
                )
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            raise ConfigurationError(f"cannot read the tokenizer in {directory}: {exc}") from exc
        pad_token = _token_text(config.get("pad_token"))
        if pad_token is None:
            raise ConfigurationError(f"{config_file} names no pad_token")
        return cls(tokenizer, context_length=context_length, pad_token=pad_token, eos_token=eos_token)

    def encode(self, text: str) -> TokenIds:
        """Ids of the already cleaned `text`: special tokens added, truncated, padded; int32."""
        ids = np.asarray(self._tokenizer.encode(text).ids, dtype=np.int32)
        return TokenIds(ids=ids, eos_id=self.eos_id)


def _token_text(value: object) -> str | None:
    """`tokenizer_config.json` stores tokens as strings or as AddedToken objects with `content`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None
