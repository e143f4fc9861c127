"""How `doctor` speaks to the worker: Immich's own requests, to a running worker or in-process.

Both transports carry the same bytes Immich's server sends (multipart `entries` + `image`/`text`)
through the whole service (decoding, option parsing, model checks, serialisation), so a probe
that passes has passed the path Immich uses. Only the standard library is used: `doctor` runs in
the production image, which has no HTTP client package.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from typing import Any, Protocol

Answer = tuple[int, Any]  # (HTTP status, parsed JSON body, or the text when it is not JSON)


def multipart(entries: dict[str, Any], *, image: bytes | None = None, text: str | None = None) -> tuple[bytes, str]:
    """The body and content type of one /predict request, laid out as undici's FormData writes it."""
    boundary = f"----formdata-undici-0{uuid.uuid4().int % 10**11:011d}"
    parts = [(b'Content-Disposition: form-data; name="entries"\r\n\r\n', json.dumps(entries).encode())]
    if image is not None:
        parts.append((b'Content-Disposition: form-data; name="image"; filename="blob"\r\n'
                      b"Content-Type: application/octet-stream\r\n\r\n", image))
    if text is not None:
        parts.append((b'Content-Disposition: form-data; name="text"\r\n\r\n', text.encode()))
    body = b"".join(f"--{boundary}\r\n".encode() + head + value + b"\r\n" for head, value in parts)
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _parse(status: int, body: bytes) -> Answer:
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


class Client(Protocol):
    async def health(self) -> dict[str, Any]: ...

    async def predict(self, entries: dict[str, Any], *, image: bytes | None = None, text: str | None = None) -> Answer: ...


class UrlClient:
    """A worker that is already serving (e.g. the container `setup.sh` started)."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _request(self, path: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, bytes]:
        headers = {"content-type": content_type} if content_type else {}
        request = urllib.request.Request(self.url + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    async def health(self) -> dict[str, Any]:
        status, body = await asyncio.to_thread(self._request, "/health")
        if status != 200:
            raise ConnectionError(f"{self.url}/health answered {status}: {body[:200]!r}")
        return json.loads(body)

    async def predict(self, entries: dict[str, Any], *, image: bytes | None = None, text: str | None = None) -> Answer:
        body, content_type = multipart(entries, image=image, text=text)
        return _parse(*await asyncio.to_thread(self._request, "/predict", body, content_type))


class AsgiClient:
    """The service app in this process, called through ASGI with its lifespan (no socket)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lifespan: asyncio.Task | None = None
        self._to_app: asyncio.Queue = asyncio.Queue()
        self._from_app: asyncio.Queue = asyncio.Queue()

    async def __aenter__(self) -> AsgiClient:
        self._lifespan = asyncio.create_task(
            self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, self._to_app.get, self._from_app.put)
        )
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {message}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        await self._from_app.get()
        await self._lifespan

    async def _call(self, method: str, path: str, body: bytes = b"", content_type: str | None = None) -> tuple[int, bytes]:
        headers = [(b"content-length", str(len(body)).encode()), (b"host", b"doctor")]
        if content_type:
            headers.append((b"content-type", content_type.encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0),
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status, chunks = 500, []

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)

    async def health(self) -> dict[str, Any]:
        status, body = await self._call("GET", "/health")
        if status != 200:
            raise ConnectionError(f"/health answered {status}")
        return json.loads(body)

    async def predict(self, entries: dict[str, Any], *, image: bytes | None = None, text: str | None = None) -> Answer:
        body, content_type = multipart(entries, image=image, text=text)
        return _parse(*await self._call("POST", "/predict", body, content_type))
