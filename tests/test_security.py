"""Security properties: nothing a request says reaches the file system or a format string, limits
are configurable and enforced, the container does not run as root, dependencies are pinned.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from emulated_service import EmulatedService, encode, photo, write_models
from immich_client import CLIP_IMAGE_ENTRIES, CLIP_TEXT_ENTRIES, FACES_ENTRIES, OCR_ENTRIES, post_predict

from ml_target.config import Settings
from ml_target.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[1]
HOSTILE_NAMES = [
    "../../../../etc/passwd",
    "/etc/passwd",
    "..\\..\\windows\\win.ini",
    "%2e%2e%2fetc%2fpasswd",
    "ViT-B-32__openai/../../secrets",
    "ViT-B-32__openai\0.hef",
    "{0.__class__.__mro__}",
    "%s%s%s%n",
    "$(touch /tmp/pwned)",
    "buffalo_l; rm -rf /",
    "x" * 5000,
]


class _FileAccess:
    """Records every file the process opens or stats while armed (a CPython audit hook).

    Audit hooks cannot be removed, so one hook is installed for the session and armed per test.
    """

    def __init__(self) -> None:
        self.armed = False
        self.paths: list[str] = []
        self._owner: int | None = None
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.armed and event in ("open", "os.listdir", "os.scandir", "os.remove", "os.rename", "shutil.copyfile"):
            self.paths.append(f"{event} {args[0]!r}" if args else event)

    def arm(self) -> None:
        self.paths.clear()
        self.armed = True

    def disarm(self) -> list[str]:
        self.armed = False
        return list(self.paths)


_ACCESS = _FileAccess()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedService]:
    service = EmulatedService(write_models(tmp_path_factory.mktemp("models")))
    yield service
    service.close()


def with_model_name(entries: str, name: str) -> str:
    parsed = orjson.loads(entries)
    for types in parsed.values():
        for entry in types.values():
            entry["modelName"] = name
    return orjson.dumps(parsed).decode()


async def test_serving_requests_opens_no_file_and_hostile_model_names_are_only_looked_up(
    worker: EmulatedService,
) -> None:
    """While serving, valid or hostile, the worker opens no file at all: model names are looked up
    in what was loaded at start-up, and the answer quotes the name without interpreting it."""
    image = encode(photo(80, 60))

    async def valid_requests() -> list:
        return [
            await post_predict(client, CLIP_IMAGE_ENTRIES, image=image),
            await post_predict(client, CLIP_TEXT_ENTRIES, text="a cat"),
            await post_predict(client, FACES_ENTRIES, image=image),
            await post_predict(client, OCR_ENTRIES, image=image),
        ]

    async with worker.client() as client:
        await valid_requests()  # warm-up: lazily created pools and lazy imports (the face stand-in)
        _ACCESS.arm()
        try:
            valid = await valid_requests()
            hostile = []
            for name in HOSTILE_NAMES:
                for entries in (CLIP_IMAGE_ENTRIES, FACES_ENTRIES, OCR_ENTRIES):
                    hostile.append((name, await post_predict(client, with_model_name(entries, name), image=image)))
                hostile.append((name, await post_predict(client, with_model_name(CLIP_TEXT_ENTRIES, name), text="a")))
        finally:
            opened = _ACCESS.disarm()
    assert [r.status_code for r in valid] == [200] * 4
    assert opened == [], opened
    for name, response in hostile:
        assert response.status_code == 400, (name, response.text)
        detail = response.json()["detail"]
        assert "model" in detail, detail
        assert "<class" not in detail and "root:" not in detail, (name, detail)  # not formatted, not read
    assert not Path("/tmp/pwned").exists()


def test_request_modules_do_not_touch_the_file_system() -> None:
    """The modules on a request's path import no file-system API; only start-up code (handler
    construction from `MODELS_DIR`) and the CLI may. A new import here needs a reason."""
    request_path = ["app.py", "protocol.py", "pipeline.py", "results.py", "errors.py", "metrics.py"]
    request_path += [f"vision/{p.name}" for p in (REPO / "ml_target" / "vision").glob("*.py")]
    forbidden = re.compile(
        r"^\s*(import (os|shutil|pathlib|glob|tempfile)\b|from (os|shutil|pathlib|glob)\b)", re.MULTILINE
    )
    opening = re.compile(r"(?<![\w.])open\(|\.open\(|\.write_bytes\(|\.write_text\(|\.read_bytes\(")
    for relative in request_path:
        source = (REPO / "ml_target" / relative).read_text()
        assert not forbidden.search(source), f"{relative} imports a file-system module"
        hits = [line for line in source.splitlines() if opening.search(line) and "Image.open(io.BytesIO" not in line]
        assert hits == [], f"{relative} opens something: {hits}"


@pytest.mark.parametrize(
    ("variable", "field", "value", "expected"),
    [
        ("MAX_UPLOAD_BYTES", "max_upload_bytes", "1048576", 1048576),
        ("MAX_IMAGE_PIXELS", "max_image_pixels", "4000000", 4_000_000),
        ("MAX_ENTRIES_BYTES", "max_entries_bytes", "4096", 4096),
        ("MAX_QUEUED_FRAMES", "max_queued_frames", "64", 64),
        ("QUEUE_WAIT_S", "queue_wait_s", "2.5", 2.5),
        ("REQUEST_TIMEOUT_S", "request_timeout_s", "12", 12.0),
        ("HEADER_TIMEOUT_S", "header_timeout_s", "2.5", 2.5),
        ("BODY_TIMEOUT_S", "body_timeout_s", "300", 300.0),
    ],
)
def test_every_limit_is_configurable_and_nonsense_is_refused(
    variable: str, field: str, value: str, expected: float
) -> None:
    assert getattr(Settings.from_env({variable: value}), field) == expected
    for nonsense in ("-1", "lots", "nan"):
        with pytest.raises(ConfigurationError, match=variable):
            Settings.from_env({variable: nonsense})


def test_every_limit_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    for variable in (
        "MAX_UPLOAD_BYTES",
        "MAX_IMAGE_PIXELS",
        "MAX_ENTRIES_BYTES",
        "MAX_QUEUED_FRAMES",
        "QUEUE_WAIT_S",
        "REQUEST_TIMEOUT_S",
        "HEADER_TIMEOUT_S",
        "BODY_TIMEOUT_S",
    ):
        assert f"`{variable}`" in readme, f"{variable} is not in README.md's settings table"


async def test_limits_from_the_environment_are_enforced(tmp_path: Path) -> None:
    env = {"MAX_UPLOAD_BYTES": "20000", "MAX_IMAGE_PIXELS": "10000", "MAX_ENTRIES_BYTES": "60"}
    limits = Settings.from_env(env)
    service = EmulatedService(
        write_models(tmp_path),
        **{
            k: getattr(limits, k)
            for k in ("max_upload_bytes", "max_image_pixels", "max_entries_bytes")
        },
    )
    try:
        async with service.client() as client:
            big = await post_predict(client, "{}", image=encode(photo(600, 600, seed=2), "PNG"))
            assert big.status_code == 413 and "MAX_UPLOAD_BYTES" in big.json()["detail"]
            pixels = await post_predict(client, "{}", image=encode(photo(101, 100)))
            assert pixels.status_code == 413 and "MAX_IMAGE_PIXELS" in pixels.json()["detail"]
            entries = await post_predict(client, CLIP_TEXT_ENTRIES, text="dog")
            assert entries.status_code == 413 and "MAX_ENTRIES_BYTES" in entries.json()["detail"]
            ok = await post_predict(client, '{"clip":{"textual":{"modelName":"ViT-B-32__openai"}}}', text="dog")
            assert ok.status_code == 200
    finally:
        service.close()


def test_the_container_runs_as_an_unprivileged_user() -> None:
    dockerfile = (REPO / "Dockerfile.app").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users, "Dockerfile.app sets no USER: the worker would run as root"
    final = users[-1]
    uid = re.search(r"^ARG APP_UID=(\d+)", dockerfile, re.MULTILINE)
    resolved = uid.group(1) if final in ("${APP_UID}", "$APP_UID") and uid else final
    assert resolved not in ("root", "0") and int(resolved) >= 1000, final
    assert '--uid "$APP_UID"' in dockerfile  # the user exists with that uid


def test_dependencies_are_pinned_by_the_lock_file() -> None:
    """constraints.txt pins every distribution CI installs (name==version), including every direct
    dependency of the package, and both install paths use it."""
    from importlib import metadata

    lines = [line for line in (REPO / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    pins = {}
    for line in lines:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"not an exact pin: {line!r}"
        pins[_canonical(match.group(1))] = match.group(2)
    required = metadata.requires("ml-target") or []
    for requirement in required:
        name = _canonical(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
        if name not in ("ml-target", "torch"):
            assert name in pins, f"{requirement} is not pinned in constraints.txt"
    assert "torch" not in pins and "ml-target" not in pins
    assert "constraints=(-c constraints.txt)" in (REPO / "scripts" / "install.sh").read_text()
    assert "-c /src/constraints.txt" in (REPO / "Dockerfile.app").read_text()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_audit_hook_sees_file_access() -> None:
    """The recorder used above does notice an open(), so an empty record means something."""
    _ACCESS.arm()
    try:
        Path(__file__).read_bytes()
    finally:
        opened = _ACCESS.disarm()
    assert any(__file__ in p for p in opened)
