"""A small HTTP/1.1 and WebSocket (RFC 6455) client on asyncio streams: what the agent needs of
HTTP, and no more.

Why not a general client library: importing aiohttp alone made up 12 of the agent's 41 MiB
resident memory (``benchmarks/agent_footprint.py`` measures both), for a handful of JSON requests
and one socket. What this client does:

* requests with a ``Content-Length`` body; answers with ``Content-Length``, chunked or
  read-until-close bodies; a total time limit per request (``asyncio.timeout``);
* kept-alive connections reused (at most ``limit`` at once); a request that finds its reused
  connection closed by the server before any answer byte (a keep-alive timeout) is sent once
  more on a fresh connection;
* TLS for ``https``/``wss`` with the system's CA store (``ssl.create_default_context``);
* a WebSocket client: handshake checked (``Sec-WebSocket-Accept``), every client frame masked,
  fragmented messages joined, pings answered, a ping of our own after ``heartbeat`` seconds of
  silence and the socket dropped when nothing at all arrives within as long again.

What it does not do (the agent never used them): proxies, redirects, compression, cookies.
Failures are ``OSError`` (refused, reset, TLS, DNS, a malformed answer: ``HttpError``) or
``TimeoutError``; an HTTP status is not a failure here, the caller reads ``Response.status``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024
# An idle connection is kept this long, then closed by us: shorter than servers' keep-alive
# timeouts (uvicorn's is 5 s), so the side that hangs up first, and waits in TIME_WAIT, is ours
# and not the server's listening port. It still serves bursts (catch-up batches, a result and its
# next request).
IDLE_KEEP_SECONDS = 2.0
_MAX_FRAME = 16 * 1024 * 1024
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


class HttpError(OSError):
    """The other side broke the protocol, or the connection ended in the middle of an answer."""


class HandshakeRejected(HttpError):
    """The server answered a WebSocket upgrade with an HTTP status instead of 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"websocket upgrade refused: HTTP {status} {body[:200].decode(errors='replace')}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class _Target:
    tls: bool
    host: str
    port: int
    host_header: str
    path: str  # path and query

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
        tls = scheme in ("https", "wss")
        return cls(tls, parts.hostname, parts.port or (443 if tls else 80), parts.netloc.rsplit("@", 1)[-1],
                   (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))

    @property
    def origin(self) -> tuple[bool, str, int]:
        return self.tls, self.host, self.port


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._watch: asyncio.Task[None] | None = None

    @property
    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self.writer.close()

    def park(self, closed_by_peer: Callable[[_Conn], None]) -> None:
        """Idle in the pool for at most ``IDLE_KEEP_SECONDS``, then closed; closed at once if the
        server closes it first. Left half-closed (CLOSE-WAIT) until the next request or the
        process's exit, the server's side would sit in TIME_WAIT on its listening port after we
        are gone."""
        self._watch = asyncio.ensure_future(self._until_closed(closed_by_peer))

    async def _until_closed(self, closed_by_peer: Callable[[_Conn], None]) -> None:
        try:
            async with asyncio.timeout(IDLE_KEEP_SECONDS):
                await self.reader.read(1)  # b"" at the end; any byte on an idle connection is an error too
        except asyncio.CancelledError:
            return  # taken from the pool again
        except (OSError, TimeoutError):
            pass
        self._watch = None
        closed_by_peer(self)

    async def unpark(self) -> None:
        """Taken from the pool: stop watching before anyone else reads (one reader at a time)."""
        if self._watch is not None:
            watch, self._watch = self._watch, None
            watch.cancel()
            await asyncio.wait([watch])


class Client:
    """One per process; ``close()`` when done. Not thread-safe (one event loop)."""

    def __init__(self, *, user_agent: str, limit: int = 8) -> None:
        self.user_agent = user_agent
        self._slots = asyncio.Semaphore(limit)
        self._limit = limit
        self._idle: dict[tuple[bool, str, int], list[_Conn]] = {}
        self._tls: Any = None  # ssl.SSLContext, made on the first https/wss connection

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports close (FIN now, from our side)

    async def _open(self, target: _Target) -> _Conn:
        tls = None
        if target.tls:
            if self._tls is None:
                import ssl  # the context loads the CA store: only for servers that need it

                self._tls = ssl.create_default_context()
            tls = self._tls
        reader, writer = await asyncio.open_connection(target.host, target.port, ssl=tls, limit=_MAX_HEAD,
                                                       server_hostname=target.host if tls else None)
        return _Conn(reader, writer)

    async def _reuse(self, target: _Target) -> _Conn | None:
        conns = self._idle.get(target.origin)
        while conns:
            conn = conns.pop()
            await conn.unpark()
            if conn.usable:
                return conn
            conn.close()
        return None

    def _keep(self, target: _Target, conn: _Conn) -> None:
        conns = self._idle.setdefault(target.origin, [])
        if len(conns) < self._limit and conn.usable:
            conns.append(conn)
            conn.park(self._closed_by_peer)
        else:
            conn.close()

    def _closed_by_peer(self, conn: _Conn) -> None:
        for conns in self._idle.values():
            if conn in conns:
                conns.remove(conn)
        conn.close()

    async def request(self, method: str, url: str, *, body: bytes | None = None,
                      headers: dict[str, str] | None = None, time_limit: float = 30) -> Response:
        target = _Target.parse(url)
        head = [f"{method} {target.path} HTTP/1.1", f"Host: {target.host_header}",
                f"User-Agent: {self.user_agent}", "Accept: */*"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body or b'')}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
        async with asyncio.timeout(time_limit), self._slots:
            while True:
                conn = await self._reuse(target)
                reused = conn is not None
                if conn is None:
                    conn = await self._open(target)
                try:
                    try:
                        conn.writer.write(data)
                        await conn.writer.drain()
                    except ConnectionError:
                        raise _NothingReceived from None
                    status, version, answer_headers = await _read_head(conn.reader)
                    answer, reusable = await _read_body(conn.reader, method, status, version, answer_headers)
                except _NothingReceived:
                    conn.close()
                    if reused:
                        continue  # the server had closed the idle connection: once more on a new one
                    raise HttpError(f"{method} {url}: the server closed the connection without answering") from None
                except BaseException:
                    conn.close()
                    raise
                if reusable:
                    self._keep(target, conn)
                else:
                    conn.close()
                return Response(status, answer_headers, answer)

    async def ws_connect(self, url: str, *, headers: dict[str, str] | None = None, heartbeat: float = 30.0,
                         close_timeout: float = 10.0, time_limit: float = 30.0) -> WebSocket:
        target = _Target.parse(url)
        key = base64.b64encode(os.urandom(16)).decode()
        head = [f"GET {target.path} HTTP/1.1", f"Host: {target.host_header}", f"User-Agent: {self.user_agent}",
                "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        async with asyncio.timeout(time_limit):
            conn = await self._open(target)
            try:
                conn.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
                await conn.writer.drain()
                status, version, answer_headers = await _read_head(conn.reader)
                if status != 101:
                    body, _ = await _read_body(conn.reader, "GET", status, version, answer_headers)
                    raise HandshakeRejected(status, body)
                accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
                if answer_headers.get("sec-websocket-accept") != accept:
                    raise HttpError("websocket upgrade: wrong Sec-WebSocket-Accept")
            except _NothingReceived:
                conn.close()
                raise HttpError("websocket upgrade: the server closed the connection") from None
            except BaseException:
                conn.close()
                raise
        return WebSocket(conn, heartbeat=heartbeat, close_timeout=close_timeout)


class _NothingReceived(Exception):
    """The connection ended before the first byte of an answer."""


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _NothingReceived from None
        raise HttpError("the connection ended in the middle of the answer's head") from None
    except asyncio.LimitOverrunError:
        raise HttpError("answer head too large") from None
    except ConnectionResetError:
        raise _NothingReceived from None
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP answer: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[0], headers


async def _read_body(reader: asyncio.StreamReader, method: str, status: int, version: str,
                     headers: dict[str, str]) -> tuple[bytes, bool]:
    """The body, and whether the connection can carry another request."""
    connection = headers.get("connection", "").lower()
    reusable = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b"", reusable
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    return b"".join(chunks), reusable
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"])), reusable
        return await reader.read(), False  # delimited by the end of the connection
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise HttpError(f"malformed or cut answer body: {type(exc).__name__}") from None


def _mask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return b""
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    return head + mask + _mask(payload, mask)


class WebSocket:
    """A client WebSocket: ``receive()`` (or ``async for``) yields text as ``str`` and binary as
    ``bytes`` until the socket closes; ``send_str``; ``close()``."""

    def __init__(self, conn: _Conn, *, heartbeat: float, close_timeout: float) -> None:
        self._conn = conn
        self._heartbeat = heartbeat
        self._close_timeout = close_timeout
        self._close_sent = False
        self.closed = False

    async def __aenter__(self) -> WebSocket:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        # Leaving on an error or a cancellation (the agent stopping): say goodbye and hang up at
        # once, without waiting for the server's answer (and, hanging up first, the wait in
        # TIME_WAIT is ours, not the server's listening port's).
        await self.close(wait=exc_type is None)

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        message = await self.receive()
        if message is None:
            raise StopAsyncIteration
        return message

    async def send_str(self, text: str) -> None:
        await self._send(TEXT, text.encode())

    async def send_bytes(self, data: bytes) -> None:
        await self._send(BINARY, data)

    async def _send(self, opcode: int, payload: bytes) -> None:
        if self.closed or self._conn.writer.is_closing():
            raise ConnectionResetError("the websocket is closed")
        self._conn.writer.write(_frame(opcode, payload))
        await self._conn.writer.drain()

    async def _read_frame(self) -> tuple[bool, int, bytes]:
        reader = self._conn.reader
        try:
            async with asyncio.timeout(self._heartbeat):
                head = await reader.readexactly(2)
        except TimeoutError:  # silence: ask for a sign of life, and give up if none comes
            await self._send(PING, b"")
            async with asyncio.timeout(self._heartbeat):
                head = await reader.readexactly(2)
        async with asyncio.timeout(self._heartbeat * 2):
            if head[0] & 0x70:
                raise HttpError("websocket frame with reserved bits set (no extension was agreed)")
            n = head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await reader.readexactly(8))[0]
            if n > _MAX_FRAME:
                raise HttpError(f"websocket frame of {n} bytes")
            mask = await reader.readexactly(4) if head[1] & 0x80 else b""
            payload = await reader.readexactly(n)
        return bool(head[0] & 0x80), head[0] & 0x0F, _mask(payload, mask) if mask else payload

    async def receive(self) -> str | bytes | None:
        """The next message; ``None`` once the socket is closed (by either side, or dead)."""
        parts: list[bytes] = []
        kind = None
        while not self.closed:
            try:
                fin, opcode, payload = await self._read_frame()
                if opcode == PING:
                    await self._send(PONG, payload)
                    continue
                if opcode == PONG:
                    continue
                if opcode == CLOSE:
                    if not self._close_sent:
                        self._close_sent = True
                        await self._send(CLOSE, payload[:2])
                    break
                if opcode in (TEXT, BINARY) and kind is None:
                    kind, parts = opcode, [payload]
                elif opcode == CONTINUATION and kind is not None:
                    parts.append(payload)
                else:
                    raise HttpError(f"unexpected websocket opcode {opcode}")
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                break
            if fin:
                data = b"".join(parts)
                return data.decode() if kind == TEXT else data
        self._abort()
        return None

    async def close(self, code: int = 1000, *, wait: bool = True) -> None:
        """Say goodbye (close frame), wait a moment for the server's (unless ``wait`` is false),
        then drop the connection."""
        if self.closed:
            return
        try:
            if not self._close_sent:
                self._close_sent = True
                await self._send(CLOSE, struct.pack("!H", code))
            if not wait:
                return
            async with asyncio.timeout(self._close_timeout):
                while True:
                    _, opcode, _ = await self._read_frame()
                    if opcode == CLOSE:
                        break
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._abort()

    def _abort(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self._conn.close()
