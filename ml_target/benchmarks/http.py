"""A minimal HTTP/1.1 keep-alive client for the load generator.

The load generator shares the machine's cores with the worker it measures, while Immich's server
would run elsewhere; every millisecond of client CPU is taken from the worker. httpx costs about
1 ms of CPU per request; writing pre-built request bytes to a kept-alive socket and reading a
Content-Length body costs a fraction of that. Only what the worker's answers use is supported:
fixed-length bodies (no chunked transfer), one request at a time per connection.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class HttpError(Exception):
    """The connection failed or the answer was not HTTP/1.1 with a Content-Length."""


def request_bytes(method: str, path: str, host: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 request, built once and sent as many times as needed."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, content length, keep-alive) from a response's status line and headers."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HttpError(f"not an HTTP/1.x status line: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise HttpError("the answer has no Content-Length")
    keep_alive = headers.get("connection", "").lower() != "close"
    return int(parts[1]), int(headers["content-length"]), keep_alive


class _StaleConnection(Exception):
    """The connection failed before any byte of the answer arrived."""


class Connection:
    """One kept-alive connection; reconnects after an error or a `Connection: close`."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send one pre-built request; return (status, body). Raises HttpError.

        A kept-alive connection the server closed while idle (uvicorn's keep-alive timeout is 5 s)
        fails before any answer byte arrives; the request is then sent once more on a new
        connection, as browsers do, since the server cannot have seen it.
        """
        reused = self._streams is not None
        try:
            return await self._exchange(request)
        except _StaleConnection as exc:
            if not reused:
                raise HttpError(str(exc)) from exc
        try:
            return await self._exchange(request)
        except _StaleConnection as exc:
            raise HttpError(str(exc)) from exc

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        try:
            if self._streams is None:
                self._streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self._streams
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.close()
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise HttpError("the server closed the connection inside an answer") from exc
            raise _StaleConnection(str(exc) or type(exc).__name__) from exc
        except asyncio.LimitOverrunError as exc:
            self.close()
            raise HttpError("answer headers too long") from exc
        try:
            status, length, keep_alive = parse_head(head)
            body = await reader.readexactly(length)
        except HttpError:
            self.close()
            raise
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.close()
            raise HttpError(str(exc) or type(exc).__name__) from exc
        if not keep_alive:
            self.close()
        return status, body

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


class Pool:
    """Connections to one server, handed out one per in-flight request and reused."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.authority = f"{self.host}:{self.port}"
        self._idle: list[Connection] = []

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send on an idle connection (or a new one); a connection that failed is not reused."""
        connection = self._idle.pop() if self._idle else Connection(self.host, self.port)
        result = await connection.send(request)
        self._idle.append(connection)
        return result

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
