"""scripts/demo.sh explains itself and refuses a taken port before installing anything.

The script runs from a copy of the repository's scripts in a temporary directory, so that "nothing
was installed" can be checked: there is no .venv there unless the script made one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    for name in ("demo.sh", "install.sh"):
        shutil.copy2(REPO / "scripts" / name, tmp_path / "scripts" / name)
    return tmp_path


def demo(checkout: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(checkout / "scripts" / "demo.sh"), *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_explains_and_installs_nothing(checkout: Path, flag: str) -> None:
    result = demo(checkout, flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: scripts/demo.sh")
    for mentioned in ("EMULATED", "IMMICH_PORT", "IMMICH_HOST", "python3-venv", "bench --quick"):
        assert mentioned in result.stdout
    assert not (checkout / ".venv").exists()


def test_an_unknown_argument_is_a_usage_error(checkout: Path) -> None:
    result = demo(checkout, "--port", "3004")
    assert result.returncode == 2
    assert "unknown argument '--port'" in result.stderr and "Usage:" in result.stderr
    assert not (checkout / ".venv").exists()


def test_a_taken_port_is_refused_before_installing_with_the_fix(checkout: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = demo(checkout, IMMICH_PORT=str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert f"IMMICH_PORT={port + 1} scripts/demo.sh" in result.stderr
    assert not (checkout / ".venv").exists()  # refused before the minutes of installing


def test_install_names_python3_venv_when_venv_cannot_be_made(checkout: Path) -> None:
    """Debian's python3 without python3-venv has no ensurepip: say which package, not a venv traceback."""
    fake = checkout / "python3"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'case "$*" in *ensurepip*) exit 1 ;; *version_info*) exit 0 ;; *) echo "unexpected: $*" >&2; exit 3 ;; esac\n'
    )
    fake.chmod(0o755)
    result = subprocess.run(
        ["bash", str(checkout / "scripts" / "install.sh")],
        env={**os.environ, "PYTHON": str(fake)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "install python3-venv (Debian/Ubuntu: sudo apt install python3-venv)" in result.stderr
    assert not (checkout / ".venv").exists()
