"""uvicorn as the worker runs it: connection limit, and time limits for slow clients.

uvicorn's `limit_concurrency` (MAX_CONNECTIONS) answers 503 beyond that many connections, but
neither uvicorn nor h11 limits how long a client may take to send its request: a few dozen
connections trickling a byte now and then would hold every slot, and Immich could no longer reach
the worker. `TimedH11Protocol` adds two deadlines per request:

- the request line and headers must arrive within `HEADER_TIMEOUT_S` of the connection opening
  (or of the first byte of the next request on a kept-alive connection): otherwise 408 and close;
- the body must be complete within `BODY_TIMEOUT_S` of the headers: otherwise 408 (if no answer
  has started) and close. The handler then sees the client as gone.

Time the worker spends answering does not count, only time waiting for the client's bytes. Idle
kept-alive connections are closed by uvicorn's own keep-alive timeout (5 s).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ml_target.config import Settings

log = logging.getLogger(__name__)
_RECEIVED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)  # nothing more to wait for from the client


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body deadlines (class attributes, see `timed_protocol`)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None  # "headers" | "body" | None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers")

    def data_received(self, data: bytes) -> None:
        if self._waiting_for is None and self.conn.their_state is h11.IDLE:
            self._arm("headers")  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()  # pipelined requests may have been parsed from what was already buffered

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Move the deadline along with what h11 has parsed of the client's request."""
        state = self.conn.their_state
        if state in _RECEIVED:
            self._disarm()
        elif state is h11.SEND_BODY and self._waiting_for != "body":
            self._arm("body")
        elif state is h11.IDLE and self._waiting_for == "body":
            self._disarm()

    def _arm(self, waiting_for: str) -> None:
        self._disarm()
        seconds = self.header_timeout_s if waiting_for == "headers" else self.body_timeout_s
        self._waiting_for = waiting_for
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._waiting_for = None

    def _expired(self) -> None:
        waiting_for, self._deadline, self._waiting_for = self._waiting_for, None, None
        if self.transport.is_closing():
            return
        setting, seconds = (
            ("HEADER_TIMEOUT_S", self.header_timeout_s)
            if waiting_for == "headers"
            else ("BODY_TIMEOUT_S", self.body_timeout_s)
        )
        reason = f"request {waiting_for} not received within {seconds:g} s ({setting})"
        client = "%s:%d" % self.client if self.client else "a client"
        log.warning("closing the connection from %s: %s", client, reason)
        # Waiting for headers, any cycle is the previous request's (answered); for the body, the
        # handler may have answered already (e.g. 413, or uvicorn's 503) and then nothing is added.
        if waiting_for == "headers" or self.cycle is None or not self.cycle.response_started:
            body = reason.encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
        if self.cycle is not None:
            self.cycle.keep_alive = False
        self.transport.close()


def timed_protocol(header_timeout_s: float, body_timeout_s: float) -> type[TimedH11Protocol]:
    """A `TimedH11Protocol` class with these deadlines, to pass as uvicorn's `http`."""
    return type(
        "TimedH11Protocol",
        (TimedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options as `serve` uses them (for `uvicorn.run` or `uvicorn.Config`): listen
    address, connection limit, slow-client deadlines."""
    return {
        "host": settings.immich_host,
        "port": settings.immich_port,
        "log_level": settings.log_level,
        "limit_concurrency": settings.max_connections,
        "http": timed_protocol(settings.header_timeout_s, settings.body_timeout_s),
    }
