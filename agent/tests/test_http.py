"""The agent's HTTP/1.1 + WebSocket client against scripted servers on loopback: the cases a real
server rarely shows on demand (chunked bodies, a kept-alive connection the server closed, pings,
fragments, silence, a refused upgrade). The end-to-end tests run it against ``rts-monitor serve``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import Awaitable, Callable

import pytest
from rts_agent.http import Client, HandshakeRejected, HttpError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"127.0.0.1:{port}"


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return head[0], headers, body


async def test_chunked_answers_and_a_kept_alive_connection_the_server_closed() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        line, headers, body = await read_request(reader)
        assert line.startswith("GET") or headers["content-length"] == str(len(body)) == "7"
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()  # as a keep-alive timeout would, right after answering

    server, host = await serve(handler)
    async with server, Client(user_agent="test") as client:
        first = await client.request("POST", f"http://{host}/a", body=b'{"x":1}')
        assert (first.status, first.body) == (200, b"hello, world")
        await asyncio.sleep(0.05)
        second = await client.request("GET", f"http://{host}/b")  # the pooled connection is dead: a new one
        assert second.body == b"hello, world" and connections == 2


async def test_a_connection_that_ends_mid_answer_is_an_error_not_a_retry() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        writer.close()

    server, host = await serve(handler)
    async with server, Client(user_agent="test") as client:
        with pytest.raises(HttpError):
            await client.request("GET", f"http://{host}/")
        with pytest.raises(TimeoutError):
            slow, slow_host = await serve(lambda r, w: asyncio.sleep(5))
            async with slow:
                await client.request("GET", f"http://{slow_host}/", time_limit=0.2)


def accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return struct.pack("!BB", (0x80 if fin else 0) | opcode, len(payload)) + payload  # server frames: unmasked


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b1, b2 = await reader.readexactly(2)
    assert b2 & 0x80, "a client frame must be masked"
    n = b2 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    mask = await reader.readexactly(4)
    data = await reader.readexactly(n)
    return b1 & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def test_websocket_pings_fragments_text_and_close() -> None:
    seen: list[tuple[int, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, _ = await read_request(reader)
        assert headers["authorization"] == "Bearer t" and headers["upgrade"] == "websocket"
        writer.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Accept: {accept(headers['sec-websocket-key'])}\r\n\r\n".encode())
        writer.write(frame(0x9, b"are you there") + frame(0x1, b'{"a":', fin=False) + frame(0x9, b"")
                     + frame(0x0, b'"b"}'))
        await writer.drain()
        seen.append(await read_frame(reader))  # pong
        seen.append(await read_frame(reader))  # pong to the ping between fragments
        seen.append(await read_frame(reader))  # the client's text
        seen.append(await read_frame(reader))  # the client's close
        writer.write(frame(0x8, seen[-1][1]))
        await writer.drain()
        writer.close()

    server, host = await serve(handler)
    async with server, Client(user_agent="test") as client:
        ws = await client.ws_connect(f"ws://{host}/ws?token=t", headers={"Authorization": "Bearer t"})
        assert await ws.receive() == '{"a":"b"}'
        await ws.send_str("x" * 300)  # a 16-bit length
        await ws.close()
        assert ws.closed
    assert seen[0] == (0xA, b"are you there") and seen[1] == (0xA, b"")
    assert seen[2] == (0x1, b"x" * 300) and seen[3] == (0x8, struct.pack("!H", 1000))


async def test_a_silent_server_is_pinged_then_dropped_and_a_refused_upgrade_says_why() -> None:
    pinged = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, _ = await read_request(reader)
        if headers.get("authorization") != "Bearer good":
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden")
            await writer.drain()
            writer.close()
            return
        writer.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Accept: {accept(headers['sec-websocket-key'])}\r\n\r\n".encode())
        await writer.drain()
        if (await read_frame(reader))[0] == 0x9:
            pinged.set()
        await asyncio.sleep(5)  # and never answers

    server, host = await serve(handler)
    async with server, Client(user_agent="test") as client:
        with pytest.raises(HandshakeRejected) as refused:
            await client.ws_connect(f"ws://{host}/ws", headers={"Authorization": "Bearer bad"})
        assert refused.value.status == 403 and refused.value.body == b"forbidden"
        ws = await client.ws_connect(f"ws://{host}/ws", headers={"Authorization": "Bearer good"}, heartbeat=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await ws.receive() is None  # silence, a ping, more silence: the socket is dead
        assert pinged.is_set() and ws.closed and 0.3 < loop.time() - started < 2
