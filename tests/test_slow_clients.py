"""Slow clients cannot hold the worker: header and body deadlines close trickling connections.

The service (fake handlers) runs on a real uvicorn socket on 127.0.0.1 with `serve`'s options
(ml_target.http_server) and short deadlines. More trickling connections than MAX_CONNECTIONS are
opened (bounded: a dozen, for a few seconds); while they hold every slot a normal request gets
uvicorn's 503, and once the deadlines have closed them it succeeds, within a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
import uvicorn
from immich_client import CLIP_TEXT_ENTRIES, immich_form
from test_app_fakes import FakeHealth, all_handlers, make_settings

from ml_target.app import create_app
from ml_target.http_server import server_options

MAX_CONNECTIONS = 8
HEADER_S, BODY_S = 1.0, 2.0
HEADERS_START = b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\n"


class Server:
    def __init__(self, **settings: float) -> None:
        self.settings = make_settings(max_connections=MAX_CONNECTIONS, **settings)

    def start(self, delay: float = 0.0) -> None:
        app = create_app(self.settings, all_handlers(delay=delay), FakeHealth())
        options = {**server_options(self.settings), "host": "127.0.0.1", "port": 0, "log_level": "warning"}
        self.server = uvicorn.Server(uvicorn.Config(app, **options, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def serve(delay: float = 0.0, **settings: float) -> Iterator[Server]:
    server = Server(**settings)
    server.start(delay)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def timed() -> Iterator[Server]:
    yield from serve(header_timeout_s=HEADER_S, body_timeout_s=BODY_S)


def text_request() -> tuple[bytes, bytes]:
    """(headers, body) of an Immich text search, as raw HTTP."""
    body, headers = immich_form(CLIP_TEXT_ENTRIES, text="a dog on the beach")
    head = HEADERS_START + f"content-type: {headers['content-type']}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
    return head, body


class Trickler:
    """A connection that sends `prefix`, then one byte of `drip` every 0.2 s until it is closed."""

    def __init__(self, port: int, prefix: bytes, drip: bytes) -> None:
        self.port, self.prefix, self.drip = port, prefix, drip
        self.received = b""
        self.closed_at: float | None = None
        self.task: asyncio.Task | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer = writer
        reading = asyncio.create_task(self._read(reader))
        try:
            writer.write(self.prefix)
            for i in range(200):  # at most 40 s; the server closes it long before
                await writer.drain()
                if reading.done():
                    break
                await asyncio.sleep(0.2)
                writer.write(self.drip[i % len(self.drip) : i % len(self.drip) + 1])
        except (ConnectionError, OSError):
            pass
        finally:
            await reading
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(4096):
            self.received += chunk
        self.closed_at = time.monotonic()


async def post_text(url: str) -> httpx.Response:
    body, headers = immich_form(CLIP_TEXT_ENTRIES, text="a dog on the beach")
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return await client.post("/predict", content=body, headers=headers)


async def hold_every_slot(port: int) -> list[Trickler]:
    """Six body tricklers (headers complete, inside the app) then six header tricklers: 12 > 8."""
    head, body = text_request()  # the body is a valid form, sent a byte at a time
    tricklers = [Trickler(port, head, body) for _ in range(6)]
    tricklers += [Trickler(port, HEADERS_START, b"x-slow: aaaaaaaa") for _ in range(6)]
    for trickler in tricklers:
        trickler.task = asyncio.create_task(trickler.run())
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    return tricklers


async def test_more_trickling_connections_than_slots_cannot_lock_out_a_normal_request(timed: Server, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ml_target")
    started = time.monotonic()
    tricklers = await hold_every_slot(timed.port)
    first = await post_text(timed.url)
    assert first.status_code == 503  # the tricklers really do hold every slot
    while (response := await post_text(timed.url)).status_code != 200:
        assert response.status_code == 503, response.text
        assert time.monotonic() - started < 5.0, "the worker stayed unreachable"
        await asyncio.sleep(0.1)
    assert response.json()["clip"].startswith("[")
    await asyncio.wait_for(asyncio.gather(*(t.task for t in tricklers)), timeout=BODY_S + 3)
    header_tricklers, body_tricklers = tricklers[6:], tricklers[:6]
    for trickler in header_tricklers:  # closed with the reason, after about HEADER_S
        assert trickler.received.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"request headers not received within 1 s (HEADER_TIMEOUT_S)" in trickler.received
        assert trickler.closed_at - started < HEADER_S + 1.5
    for trickler in body_tricklers:  # in the app (408) or refused with 503 when all slots were taken
        assert trickler.received.startswith((b"HTTP/1.1 408 ", b"HTTP/1.1 503 ")), trickler.received[:60]
        assert trickler.closed_at is not None
    assert any(b"request body not received within 2 s (BODY_TIMEOUT_S)" in t.received for t in body_tricklers)
    # The handlers saw those as clients gone (499 in the access log and metrics), not as server errors.
    access = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "ml_target.access"]
    assert {line["status"] for line in access} <= {200, 499} and any(line["status"] == 499 for line in access)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_without_the_deadlines_the_tricklers_would_lock_it_out() -> None:
    """The control: the same tricklers against deadlines of a minute keep every slot."""
    for server in serve(header_timeout_s=60.0, body_timeout_s=60.0):
        tricklers = await hold_every_slot(server.port)
        deadline = time.monotonic() + HEADER_S + BODY_S + 0.5
        while time.monotonic() < deadline:
            assert (await post_text(server.url)).status_code == 503
            await asyncio.sleep(0.2)
        for trickler in tricklers:
            trickler.writer.transport.abort()  # the client goes away: the server lets go at once
        await asyncio.wait_for(asyncio.gather(*(t.task for t in tricklers), return_exceptions=True), timeout=5)


async def test_a_silent_connection_is_closed_with_408(timed: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", timed.port)
    started = time.monotonic()
    answer = await asyncio.wait_for(reader.read(), timeout=HEADER_S + 2)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and answer.endswith(b"(HEADER_TIMEOUT_S)")
    assert HEADER_S - 0.1 <= time.monotonic() - started < HEADER_S + 1.5
    writer.close()


async def test_the_header_deadline_applies_to_every_request_on_a_kept_alive_connection(timed: Server) -> None:
    head, body = text_request()
    reader, writer = await asyncio.open_connection("127.0.0.1", timed.port)
    await asyncio.sleep(HEADER_S * 0.7)
    writer.write(head + body)  # the first request, well within its deadline
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert first.startswith(b"HTTP/1.1 200 ")
    length = int(next(line for line in first.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1])
    await reader.readexactly(length)
    await asyncio.sleep(HEADER_S * 0.7)  # longer in total than one deadline: the second one starts afresh
    writer.write(HEADERS_START)
    started = time.monotonic()
    second = await asyncio.wait_for(reader.read(), timeout=HEADER_S + 2)
    assert second.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < HEADER_S + 1.5
    writer.close()


async def test_a_slow_upload_within_the_deadline_and_slow_answers_are_served() -> None:
    """A body sent in pieces over 1.2 s meets BODY_S = 2 s; the handler's own 2.5 s do not count."""
    for server in serve(delay=2.5, header_timeout_s=HEADER_S, body_timeout_s=BODY_S):
        head, body = text_request()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head)
        pieces = 4
        for i in range(pieces):
            await asyncio.sleep(0.3)
            writer.write(body[i * len(body) // pieces : (i + 1) * len(body) // pieces])
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        writer.close()
