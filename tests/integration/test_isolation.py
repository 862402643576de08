#!/usr/bin/python3
"""test_isolation.py -- bad input is the sender's problem only.

Healthy subscribers keep receiving every message, in order, while twenty
hostile connections each misbehave in their own way at the same time. Each
hostile connection gets the treatment the contract promises (the right HTTP
status or WebSocket close code), ferryd stays healthy, and /ferry/metrics
counts the errors.
"""
import asyncio
import base64
import http.client
import json
import os
import random
import re
import socket
import struct
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Ferry, metrics, run  # noqa: E402

import websockets  # noqa: E402

ROUNDS = 3          # each hostile kind attacks this many times, on a new connection each time
N_MESSAGES = 60     # published while the attack goes on
N_HEALTHY = 5
OPEN_SOCKETS = []  # every raw socket, closed when the test ends


# ---------------------------------------------------------------- raw client

class Raw:
    """A raw client on a non-blocking socket. Bytes the server sent stay
    readable even if the connection is then reset (asyncio streams would
    drop them), so a Close frame followed by an RST is still seen."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = None  # None, "eof" or "reset"

    @classmethod
    async def open(cls, port):
        sock = socket.socket()
        OPEN_SOCKETS.append(sock)
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), 5)
        return cls(sock)

    async def _fill(self):
        """Read more into buf; False once the peer is gone."""
        if self.eof:
            return False
        try:
            b = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        except ConnectionResetError:
            self.eof = "reset"
            return False
        if not b:
            self.eof = "eof"
            return False
        self.buf += b
        return True

    async def readuntil(self, sep):
        while sep not in self.buf:
            if not await self._fill():
                raise EOFError("closed before %r: %r" % (sep, self.buf))
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    async def readexactly(self, n):
        while len(self.buf) < n:
            if not await self._fill():
                raise EOFError("closed")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    async def read_to_end(self):
        while await self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    @classmethod
    async def ws(cls, port, path="/ferry/ws"):
        """Upgraded connection; the ferry "open" frame is consumed."""
        c = await cls.open(port)
        key = base64.b64encode(os.urandom(16)).decode()
        c.write(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, port, key)).encode())
        await c.drain()
        head = await asyncio.wait_for(c.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        op, payload = await c.frame()
        assert op == 1 and json.loads(payload)["type"] == "open", payload
        return c

    def write(self, data):
        self.pending = getattr(self, "pending", b"") + data

    async def drain(self):
        """Send what write() queued; a peer that already hung up is not an error here."""
        data, self.pending = getattr(self, "pending", b""), b""
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_sendall(self.sock, data), 5)
        except (ConnectionError, asyncio.TimeoutError):
            pass

    def frame_bytes(self, opcode, payload, fin=True, mask=True, rsv=0, length=None):
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | rsv << 4 | opcode
        mbit = 0x80 if mask else 0
        if n < 126:
            head = bytes([b0, mbit | n])
        elif n < 65536:
            head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
        else:
            head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
        if not mask:
            return head + payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    async def send(self, opcode, payload=b"", **kw):
        self.write(self.frame_bytes(opcode, payload, **kw))
        await self.drain()

    async def frame(self, timeout=5):
        async def read():
            b0, b1 = await self.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.readexactly(8))[0]
            return b0 & 0x0F, await self.readexactly(n)
        return await asyncio.wait_for(read(), timeout)

    async def close_code(self, timeout=5):
        """Read until the server's Close frame; return its code, then expect TCP EOF."""
        while True:
            try:
                op, payload = await self.frame(timeout)
            except EOFError:
                return "%s without a close frame" % self.eof
            except asyncio.TimeoutError:
                return "no close frame within %ss" % timeout
            if op == 8:
                break
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        try:
            rest = await asyncio.wait_for(self.read_to_end(), 3)
        except asyncio.TimeoutError:
            return "TCP left open after close %r" % code
        if rest:
            return "bytes after close %r: %r" % (code, rest[:50])
        return code

    async def http_status(self, timeout=5):
        """Status of the response, and check the server then closes."""
        try:
            data = await asyncio.wait_for(self.read_to_end(), timeout)
        except asyncio.TimeoutError:
            return "no response/close within %ss" % timeout
        m = re.match(rb"^HTTP/1\.1 (\d{3}) ", data)
        return int(m.group(1)) if m else "not an HTTP response: %r" % data[:60]

    def abort(self):
        self.sock.close()


# ---------------------------------------------------------------- the attacks
# Each returns what happened; the table below says what should happen.

async def http_status_after(port, data):
    """Send data on a new connection; the status of the answer (then a close)."""
    c = await Raw.open(port)
    c.write(data)
    await c.drain()
    return await c.http_status()


async def close_code_after(port, opcode, payload, timeout=5, **frame):
    """Send one frame on a new WebSocket; the close code it earns."""
    c = await Raw.ws(port)
    await c.send(opcode, payload, **frame)
    return await c.close_code(timeout)


async def random_bytes_as_http(port):
    return await http_status_after(port, random.Random(42).randbytes(4096))


async def half_request_then_disconnect(port):
    c = await Raw.open(port)
    c.write(b"GET /ferry/ws?ch=iso HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr")
    await c.drain()
    await asyncio.sleep(0.05)
    c.abort()
    return None


async def oversized_headers(port):
    return await http_status_after(
        port, b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-Junk-%d: %s\r\n" % (i, b"j" * 1000) for i in range(20)) + b"\r\n")


async def bad_websocket_key(port):
    return await http_status_after(
        port, b"GET /ferry/ws?ch=iso HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: !!!\r\nSec-WebSocket-Version: 13\r\n\r\n")


async def subscribe_to_bad_channel(port):
    return await http_status_after(
        port, b"GET /ferry/ws?ch=../../etc/passwd%00 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n")


async def unmasked_frame(port):
    return await close_code_after(port, 1, b'{"type":"ping"}', mask=False)


async def invalid_utf8(port):
    return await close_code_after(port, 1, b'{"type":"ping","x":"\xc3\x28"}')


async def invalid_utf8_mid_fragment(port):
    """Fail fast: the bad byte is in the first fragment; the rest never comes."""
    return await close_code_after(port, 1, b'{"data":"ok \xf0\x28\x8c\x28', fin=False, timeout=3)


async def huge_length_field(port):
    c = await Raw.ws(port)
    c.write(c.frame_bytes(1, b"", length=1 << 40) + b"\x00" * 4)
    await c.drain()
    return await c.close_code(timeout=3)


async def message_too_big(port):
    """--ws-max-message 64K; 100K of valid text in fragments."""
    c = await Raw.ws(port)
    chunk = b"a" * 10000
    for i in range(10):
        await c.send(1 if i == 0 else 0, chunk, fin=(i == 9))
    return await c.close_code()


async def close_with_bad_code(port):
    return await close_code_after(port, 8, struct.pack("!H", 999) + b"bye")


async def close_with_one_byte(port):
    return await close_code_after(port, 8, b"\x03")


async def close_with_bad_utf8_reason(port):
    return await close_code_after(port, 8, struct.pack("!H", 1000) + b"\xff\xfe")


async def rsv_bits(port):
    return await close_code_after(port, 1, b'{"type":"ping"}', rsv=0b100)


async def reserved_opcode(port):
    return await close_code_after(port, 0x3, b"what")


async def fragmented_ping(port):
    return await close_code_after(port, 0x9, b"pi", fin=False)


async def oversized_control_frame(port):
    return await close_code_after(port, 0x9, b"p" * 200)


async def continuation_without_start(port):
    return await close_code_after(port, 0x0, b'{"type":"ping"}')


async def data_frame_inside_fragmented(port):
    c = await Raw.ws(port)
    await c.send(1, b'{"type":', fin=False)
    await c.send(1, b'"ping"}')
    return await c.close_code()


async def binary_message(port):
    return await close_code_after(port, 2, b"\x00\x01\x02")


async def disconnect_mid_frame(port):
    c = await Raw.ws(port)
    full = c.frame_bytes(1, b'{"type":"subscribe","channel":"iso"}')
    c.write(full[:len(full) // 2])
    await c.drain()
    await asyncio.sleep(0.05)
    c.abort()
    return None


async def json_garbage_spam(port):
    """Bad JSON is answered with errors; the connection stays up and works."""
    c = await Raw.ws(port)
    for i in range(50):
        await c.send(1, b"{not json %d" % i)
    for i in range(50):
        op, payload = await c.frame()
        m = json.loads(payload)
        if m.get("type") != "error" or m.get("code") != "bad_request":
            return "unexpected reply %r" % m
    await c.send(1, b'{"type":"ping","ref":1}')
    op, payload = await c.frame()
    c.abort()
    return json.loads(payload)


ATTACKS = [
    # (attack, expected outcome, metric kind it must count)
    (random_bytes_as_http, 400, "http_400"),
    (half_request_then_disconnect, None, None),
    (oversized_headers, 431, "http_431"),
    (bad_websocket_key, 400, "http_400"),
    (subscribe_to_bad_channel, 400, "http_400"),
    (unmasked_frame, 1002, "ws_protocol"),
    (invalid_utf8, 1007, "ws_bad_utf8"),
    (invalid_utf8_mid_fragment, 1007, "ws_bad_utf8"),
    (huge_length_field, 1009, "ws_too_big"),
    (message_too_big, 1009, "ws_too_big"),
    (close_with_bad_code, 1002, "ws_protocol"),
    (close_with_one_byte, 1002, "ws_protocol"),
    (close_with_bad_utf8_reason, 1007, "ws_bad_utf8"),
    (rsv_bits, 1002, "ws_protocol"),
    (reserved_opcode, 1002, "ws_protocol"),
    (fragmented_ping, 1002, "ws_protocol"),
    (oversized_control_frame, 1002, "ws_protocol"),
    (continuation_without_start, 1002, "ws_protocol"),
    (data_frame_inside_fragmented, 1002, "ws_protocol"),
    (binary_message, 1003, "ws_refused_op"),
    (disconnect_mid_frame, None, None),
    (json_garbage_spam, {"type": "pong", "ref": 1}, None),
]


def test_isolation():
    with Ferry("--ws-max-message", "64K") as f:
        async def main():
            healthy = []
            try:
                for _ in range(N_HEALTHY):
                    ws = await websockets.connect(f.ws_url + "/ferry/ws?ch=iso", ping_interval=None,
                                                  open_timeout=5)
                    healthy.append(ws)
                    assert json.loads(await ws.recv())["type"] == "open"
                    assert json.loads(await ws.recv())["type"] == "subscribed"

                async def attacker(attack, expected):
                    outcomes = []
                    for _ in range(ROUNDS):
                        outcomes.append(await attack(f.port))
                        await asyncio.sleep(random.uniform(0.2, 0.6))
                    return [(attack.__name__, got, expected) for got in outcomes if got != expected]

                def publisher():
                    conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=5)
                    ids = []
                    for i in range(N_MESSAGES):
                        conn.request("POST", "/ferry/publish/iso", body=b"msg %d" % i)
                        r = conn.getresponse()
                        assert r.status == 200, r.status
                        ids.append(json.loads(r.read())["id"])
                        time.sleep(0.03)
                    conn.close()
                    return ids

                async def receive(ws):
                    return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(N_MESSAGES)]

                receivers = [asyncio.ensure_future(receive(ws)) for ws in healthy]
                attackers = asyncio.gather(*(attacker(a, e) for a, e, _ in ATTACKS))
                ids = await asyncio.get_running_loop().run_in_executor(None, publisher)
                wrong = [w for ws in await asyncio.wait_for(attackers, 30) for w in ws]
                received = await asyncio.wait_for(asyncio.gather(*receivers), 15)

                for got in received:
                    assert [(m["id"], m["data"]) for m in got] == \
                        [(mid, "msg %d" % i) for i, mid in enumerate(ids)], \
                        "a healthy subscriber lost or reordered messages during the attack"
                # and they are still fine afterwards
                for ws in healthy:
                    await ws.send('{"type":"ping","ref":7}')
                    assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong", "ref": 7}
                return wrong
            finally:
                for ws in healthy:
                    ws.transport.abort()
                for sock in OPEN_SOCKETS:
                    sock.close()
        wrong = asyncio.run(main())

        with urllib.request.urlopen(f.url + "/ferry/healthz", timeout=5) as r:
            assert r.status == 200 and json.loads(r.read())["status"] == "ok"
        m = metrics(f.port)
        assert not wrong, "hostile connections were not handled as specified:\n  " + "\n  ".join(
            "%s: got %r, expected %r" % w for w in wrong)
        expected_counts = {}
        for _, _, kind in ATTACKS:
            if kind:
                expected_counts[kind] = expected_counts.get(kind, 0) + ROUNDS
        for kind, n in expected_counts.items():
            got = m.get('ferry_errors_total{kind="%s"}' % kind, 0)
            assert got >= n, "ferry_errors_total{kind=%r} = %r, expected at least %d" % (kind, got, n)
        deadline = time.monotonic() + 3  # every connection, hostile or not, was let go
        while m['ferry_connections{transport="websocket"}'] != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            m = metrics(f.port)
        assert m['ferry_connections{transport="websocket"}'] == 0, m
        assert m["ferry_messages_in_total"] == N_MESSAGES, m


if __name__ == "__main__":
    run([test_isolation])
