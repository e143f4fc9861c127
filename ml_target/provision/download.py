"""HTTP downloads that survive bad networks: retries with exponential backoff, Range resume.

Model Zoo HEFs are 3-200 MB and users fetch them over home connections, Wi-Fi on a Raspberry Pi,
or through proxies. An attempt that fails part-way leaves its bytes in `<file>.part` and the next
attempt (or the next run) asks only for the rest. Permanent answers (404, 403) are not retried:
they mean a wrong URL, and retrying would only delay the message that says so.
"""

from __future__ import annotations

import http.client
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ml_target.networks import ZOO_VERSION
from ml_target.provision.checks import ProvisionError

PERMANENT_HTTP = frozenset({400, 401, 403, 404, 405, 410})
CHUNK = 1 << 16


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per file and the exponential backoff between them (1, 2, 4, ... s, capped)."""

    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    timeout_s: float = 30.0

    def delay(self, failures: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1))


class Progress:
    """A plain-text progress bar on a stream: redrawn in place on a terminal, a few lines otherwise."""

    WIDTH = 30

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_step = -1
        self._line_open = False

    def update(self, done: int, total: int | None) -> None:
        if total:
            fraction = min(1.0, done / total)
            step = int(fraction * 100) if self.tty else int(fraction * 4)
            if step == self._last_step:
                return
            self._last_step = step
            filled = int(fraction * self.WIDTH)
            text = (
                f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%} "
                f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
            )
        else:
            if not self.tty:
                return
            text = f"{self.label} {done / 1e6:.1f} MB"
        self.stream.write(("\r" + text) if self.tty else text + "\n")
        self.stream.flush()
        self._line_open = self.tty

    def finish(self) -> None:
        """End the bar's line, so that what is written next starts on a fresh one."""
        if self._line_open:
            self.stream.write("\n")
            self.stream.flush()
            self._line_open = False


class _Transient(Exception):
    """A failure worth another attempt (network error, 5xx, short body)."""


def _content_range(value: str | None) -> tuple[int, int | None]:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    if not match:
        raise _Transient(f"unusable Content-Range {value!r}")
    total = None if match.group(2) == "*" else int(match.group(2))
    return int(match.group(1)), total


def _attempt(url: str, part: Path, timeout: float, progress: Progress) -> None:
    """One GET, resuming from `part` when it holds bytes; raises _Transient or HTTPError."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "ml_target-fetch-models"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            part.unlink()
            raise _Transient("the server refused to resume; starting over") from None
        if exc.code in PERMANENT_HTTP:
            raise
        raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Transient(str(exc)) from None
    with response:
        if offset and response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Transient(f"the server resumed at byte {start}, not {offset}; starting over")
            mode = "ab"
        else:
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        done = offset
        try:
            with part.open(mode) as f:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    progress.update(done, total)
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"connection lost after {done} bytes: {exc}") from None
    if total is not None and done != total:
        raise _Transient(f"connection closed after {done} of {total} bytes")


def download(
    url: str,
    part: Path,
    *,
    policy: RetryPolicy,
    progress: Progress,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Fetch `url` into `part` (resuming what is there) with retries and exponential backoff."""
    failures = 0
    while True:
        try:
            _attempt(url, part, policy.timeout_s, progress)
            progress.finish()
            return
        except urllib.error.HTTPError as exc:
            progress.finish()
            raise ProvisionError(_http_hint(url, exc.code)) from None
        except _Transient as exc:
            progress.finish()
            failures += 1
            if failures >= policy.attempts:
                kept = f"; {part.stat().st_size} bytes are kept in {part} and the next run resumes" if part.exists() else ""
                raise ProvisionError(f"could not download {url} after {failures} attempts: {exc}{kept}") from None
            delay = policy.delay(failures)
            progress.stream.write(f"  {exc}; retrying in {delay:g} s ({failures}/{policy.attempts - 1})\n")
            sleep(delay)


def _http_hint(url: str, code: int) -> str:
    if code in (403, 404, 410):
        return (
            f"{url} answered HTTP {code}: the file does not exist there. Check --arch and --base-url; "
            f"the Model Zoo {ZOO_VERSION} bucket answers 403/404 for a HEF it does not publish for that chip"
        )
    return f"{url} answered HTTP {code}; this is not retried: check the URL and the mirror's configuration"
