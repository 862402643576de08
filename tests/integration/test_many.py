#!/usr/bin/env python3
"""test_many.py -- 10,000 concurrent WebSocket clients on loopback.

ferryd (--max-connections 12000) holds 10,000 subscribers of one channel,
opened by asyncio raw sockets (our own handshake, 500 in flight at a time);
every one gets 101 and the "open" frame, then all 3 messages published by
HTTP POST; the metrics gauge shows 10,000 WebSockets, and 0 after all close.
The whole test is bounded (< 120 s).
"""
import asyncio
import base64
import hashlib
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Ferry, raise_nofile, run  # noqa: E402

WANTED = 10000
IN_FLIGHT = 500          # handshakes at a time
N_MESSAGES = 3
OVERALL = 110.0          # seconds, the bound of the whole test
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
GAUGE = 'ferry_connections{transport="websocket"}'


def clients_that_fit():
    """Soft RLIMIT_NOFILE to the hard limit; returns how many clients fit."""
    hard = raise_nofile()
    n = WANTED
    if hard < WANTED + 100:
        n = max(100, hard - 200)
        print("NOTE: RLIMIT_NOFILE hard limit is %d (< %d): testing %d clients instead of %d"
              % (hard, WANTED + 100, n, WANTED), flush=True)
    return n


async def read_frame(reader):
    """One server frame -> (opcode, payload). Server frames are unmasked."""
    b0, b1 = await reader.readexactly(2)
    assert not (b1 & 0x80), "server frame is masked"
    assert not (b0 & 0x70), "server frame has RSV bits"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    payload = await reader.readexactly(n) if n else b""
    assert b0 & 0x80, "unexpected fragmented server frame"
    return b0 & 0x0F, payload


def masked_frame(opcode, payload):
    key = os.urandom(4)
    body = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + key + body


async def http(port, method, path, body=b""):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (method.encode(), path.encode(), port,
                                                       len(body), body))
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, rest


async def gauge(port):
    status, body = await http(port, "GET", "/ferry/metrics")
    assert status == 200, status
    for ln in body.decode().splitlines():
        if ln.startswith(GAUGE + " "):
            return int(float(ln.split()[-1]))
    raise AssertionError("no %s in metrics" % GAUGE)


class Client:
    __slots__ = ("reader", "writer", "got")


async def open_client(port, sem, i):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16))
        writer.write(b"GET /ferry/ws?ch=crowd HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n" % (port, key))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        assert head.startswith(b"HTTP/1.1 101"), "client %d: %r" % (i, head[:200])
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        assert b"\r\nsec-websocket-accept: " + accept.lower() + b"\r\n" in head.lower(), \
            "client %d: bad accept in %r" % (i, head)
        op, payload = await asyncio.wait_for(read_frame(reader), 20)
        m = json.loads(payload)
        assert op == 1 and m.get("type") == "open", "client %d: first frame %r" % (i, payload)
        op, payload = await asyncio.wait_for(read_frame(reader), 20)
        m = json.loads(payload)
        assert op == 1 and m.get("type") == "subscribed" and m.get("channel") == "crowd", \
            "client %d: second frame %r" % (i, payload)
        c = Client()
        c.reader, c.writer, c.got = reader, writer, []
        return c


async def receive(c, n):
    while len(c.got) < n:
        op, payload = await read_frame(c.reader)
        assert op == 1, "unexpected opcode %d %r" % (op, payload[:80])
        m = json.loads(payload)
        assert m.get("type") == "message", m
        c.got.append((m["id"], m["data"]))


async def close_client(c):
    c.writer.write(masked_frame(8, struct.pack("!H", 1000)))
    op, payload = await read_frame(c.reader)
    assert op == 8 and payload[:2] == struct.pack("!H", 1000), (op, payload)
    rest = await c.reader.read()            # the server closes TCP
    assert rest == b"", rest[:80]
    c.writer.close()


async def scenario(port, n):
    t0 = time.monotonic()
    sem = asyncio.Semaphore(IN_FLIGHT)
    clients = await asyncio.gather(*(open_client(port, sem, i) for i in range(n)))
    t1 = time.monotonic()
    print("  %d clients connected, each got 101, open and subscribed (%.1fs)" % (n, t1 - t0), flush=True)

    count = await gauge(port)
    assert count == n, "metrics: %s %d, expected %d" % (GAUGE, count, n)

    readers = [asyncio.ensure_future(receive(c, N_MESSAGES)) for c in clients]
    ids = []
    for k in range(N_MESSAGES):
        status, body = await http(port, "POST", "/ferry/publish/crowd", b"crowd message %d" % k)
        assert status == 200, (status, body)
        ids.append(json.loads(body)["id"])
    done, pending = await asyncio.wait(readers, timeout=60)
    for r in pending:
        r.cancel()
    errors = [r.exception() for r in done if r.exception()]
    complete = sum(1 for c in clients if len(c.got) == N_MESSAGES)
    t2 = time.monotonic()
    print("  %d/%d clients received all %d messages (%.1fs)" % (complete, n, N_MESSAGES, t2 - t1), flush=True)
    assert not pending and not errors, "%d clients timed out, %d failed (first: %r)" % (
        len(pending), len(errors), errors[:1])
    want = [(ids[k], "crowd message %d" % k) for k in range(N_MESSAGES)]
    wrong = [i for i, c in enumerate(clients) if c.got != want]
    assert not wrong, "%d clients got wrong messages, e.g. client %d: %r" % (
        len(wrong), wrong[0], clients[wrong[0]].got)

    sem = asyncio.Semaphore(IN_FLIGHT * 4)

    async def bounded_close(c):
        async with sem:
            await asyncio.wait_for(close_client(c), 20)
    results = await asyncio.gather(*(bounded_close(c) for c in clients), return_exceptions=True)
    bad = [r for r in results if isinstance(r, BaseException)]
    t3 = time.monotonic()
    print("  closed all clients (%.1fs)" % (t3 - t2), flush=True)
    assert not bad, "%d clients had a bad close handshake (first: %r)" % (len(bad), bad[0])

    deadline = time.monotonic() + 15
    while True:
        count = await gauge(port)
        if count == 0:
            break
        assert time.monotonic() < deadline, "metrics still show %d websockets after closing all" % count
        await asyncio.sleep(0.1)
    print("  metrics back to 0 websocket connections (%.1fs)" % (time.monotonic() - t3), flush=True)


def test_ten_thousand_clients():
    n = clients_that_fit()
    with Ferry("--max-connections", "12000", "--ws-ping", "5m", "--drain-window", "1s",
               "--drain-timeout", "10s") as f:
        asyncio.run(asyncio.wait_for(scenario(f.port, n), OVERALL))


if __name__ == "__main__":
    run([test_ten_thousand_clients])
