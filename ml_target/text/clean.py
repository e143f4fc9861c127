"""Query cleaning exactly as Immich does it before tokenising (immich-protocol.md §6.2).

Immich collapses whitespace for every model and, for models whose config says `canonicalize`
(SigLIP, SigLIP2), then removes `string.punctuation` and lower-cases. This is not open_clip's
canonicalize (no HTML unescape, `_` removed rather than turned into a space, and double spaces can
remain: "a - b" -> "a  b"); matching Immich, not open_clip, keeps queries in the stored space.
"""

from __future__ import annotations

import string

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def clean_text(text: str, *, canonicalize: bool) -> str:
    """Collapse whitespace; with `canonicalize` also drop ASCII punctuation and lower-case."""
    text = " ".join(text.split())
    if canonicalize:
        text = text.translate(_PUNCTUATION).lower()
    return text
