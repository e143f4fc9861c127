"""A loopback HTTP server standing in for the Model Zoo, a mirror and Immich's Hugging Face repositories.

Files are served by URL path, with HTTP Range resume; scripted faults per path (`500`, `html`: a
captive-portal page instead of the file, `drop`: the connection closes after a third of the
body); `redirects` answer 302 to another path, as Hugging Face sends large files to its CDN.
Every request is logged with its Range header. Bound to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Zoo:
    """State of the fake server: files by URL path, scripted faults, redirects and a request log."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.origin = ""
        self.base_url = ""


def _handler(zoo: Zoo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            zoo.requests.append((self.path, self.headers.get("Range")))
            if self.path in zoo.redirects:
                self.send_response(302)
                self.send_header("Location", zoo.origin + zoo.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            fault = zoo.faults.get(self.path, []).pop(0) if zoo.faults.get(self.path) else None
            if fault == "500":
                self.send_error(500)
                return
            if fault == "html":
                self._send(200, b"<html><body>Please log in to the hotel wifi</body></html>", "text/html")
                return
            data = zoo.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.removeprefix("bytes=").rstrip("-"))
            body = data[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if fault == "drop":
                self.wfile.write(body[: len(body) // 3])
                self.close_connection = True
                return
            self.wfile.write(body)

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def serve_zoo() -> Iterator[Zoo]:
    """The server on a free 127.0.0.1 port; `base_url` is `<origin>/zoo`."""
    state = Zoo()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.origin = f"http://127.0.0.1:{server.server_address[1]}"
    state.base_url = f"{state.origin}/zoo"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
