#!/usr/bin/env python3
"""test_autobahn.py -- RFC 6455 conformance of ferryd's WebSocket server.

The equivalent of the Autobahn|Testsuite server cases 1-7 and 9, run against
`ferryd --echo` at /ferry/echo by a raw-socket client written here (its own
masked-frame encoder and frame reader), so every byte on the wire is ours.
Each assertion message carries the Autobahn case id it mirrors.
"""
import base64
import hashlib
import os
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Closing, Ferry, metrics, run  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
TIMEOUT = 10.0          # any single wait for the server
FAST = 3.0              # waits where the server must react "at once"

# Servers started by the groups; both are shared by all cases of a group.
FERRY_ARGS = ("--echo", "--ws-max-message", "20M", "--drain-window", "100ms",
              "--drain-timeout", "5s")


def mask_bytes(payload, key):
    """XOR payload with the 4-byte key, fast for megabytes (big-int XOR)."""
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, key=None, length=None):
    """Encode one client frame. `length` overrides the announced length (for
    sending a header and only part of the payload)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return hdr + payload
    key = key or os.urandom(4)
    return hdr + key + mask_bytes(payload, key)


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, rsv, opcode, payload):
        self.fin, self.rsv, self.opcode, self.payload = fin, rsv, opcode, payload

    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def __repr__(self):
        p = self.payload if len(self.payload) <= 64 else self.payload[:64] + b"..."
        return "Frame(fin=%d rsv=%d op=%d len=%d %r)" % (self.fin, self.rsv, self.opcode,
                                                          len(self.payload), p)


class WS(Closing):
    """A blocking raw WebSocket client with bounded waits."""

    def __init__(self, port, path="/ferry/echo", case="?"):
        self.case = case
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        key = base64.b64encode(os.urandom(16))
        req = (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
               b"\r\nSec-WebSocket-Version: 13\r\n\r\n") % port
        self.sock.sendall(req)
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n\r\n" not in self.buf:
            assert time.monotonic() < deadline, "[%s] handshake timed out" % case
            b = self.sock.recv(4096)
            assert b, "[%s] connection closed during handshake: %r" % (case, bytes(self.buf))
            self.buf += b
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.split(b"\r\n")
        assert lines[0].startswith(b"HTTP/1.1 101"), "[%s] handshake: %r" % (case, head)
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            hdrs[k.strip().lower()] = v.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        assert hdrs.get(b"sec-websocket-accept") == accept, "[%s] bad accept: %r" % (case, head)

    # -- sending ---------------------------------------------------------
    def send(self, data, chunk=None, delay=0.0, may_close=False):
        """Send raw bytes, optionally in chunks of `chunk` bytes. may_close:
        the server is expected to fail the connection part way, so a broken
        pipe / reset while sending the rest is not an error."""
        try:
            if not chunk:
                self.sock.sendall(data)
                return
            for i in range(0, len(data), chunk):
                self.sock.sendall(data[i:i + chunk])
                if delay:
                    time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            if not may_close:
                raise

    def send_frame(self, opcode, payload=b"", chunk=None, **kw):
        self.send(frame(opcode, payload, **kw), chunk=chunk)

    def send_async(self, data):
        """sendall in a thread (for megabytes, so reading can go on at the
        same time); returns the thread, whose .error holds any OSError."""
        def go():
            try:
                self.sock.sendall(data)
            except OSError as e:
                t.error = e
        t = threading.Thread(target=go, daemon=True)
        t.error = None
        t.start()
        return t

    # -- receiving -------------------------------------------------------
    def _fill(self, n, deadline):
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("[%s] timed out waiting for %d bytes (have %d)"
                                     % (self.case, n, len(self.buf)))
            r, _, _ = select.select([self.sock], [], [], remaining)
            if not r:
                continue
            b = self.sock.recv(max(1 << 18, n - len(self.buf)))
            if not b:
                raise EOFError("[%s] connection closed by server (had %d of %d bytes): %r"
                               % (self.case, len(self.buf), n, bytes(self.buf[:80])))
            self.buf += b

    def _take(self, n, deadline):
        if len(self.buf) >= n:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        # large payload: read straight into a preallocated buffer
        out = bytearray(n)
        have = len(self.buf)
        out[:have] = self.buf
        self.buf.clear()
        mv = memoryview(out)
        while have < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("[%s] timed out in payload (%d of %d)" % (self.case, have, n))
            r, _, _ = select.select([self.sock], [], [], remaining)
            if not r:
                continue
            k = self.sock.recv_into(mv[have:], n - have)
            if k == 0:
                raise EOFError("[%s] connection closed in payload (%d of %d)" % (self.case, have, n))
            have += k
        return bytes(out)

    def recv_frame(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        hl = 2 + (2 if n == 126 else 8 if n == 127 else 0)
        self._fill(hl, deadline)
        if n == 126:
            n = struct.unpack("!H", self.buf[2:4])[0]
        elif n == 127:
            n = struct.unpack("!Q", self.buf[2:10])[0]
        assert not (b1 & 0x80), "[%s] server frame is masked" % self.case
        del self.buf[:hl]
        payload = self._take(n, deadline)
        f = Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, payload)
        assert f.rsv == 0, "[%s] server frame with RSV bits: %r" % (self.case, f)
        return f

    def recv_message(self, timeout=TIMEOUT):
        """Next data message (reassembled). Control frames are returned as is."""
        deadline = time.monotonic() + timeout
        f = self.recv_frame(timeout)
        if f.opcode >= 8 or f.fin:
            return f
        parts = [f.payload]
        while True:
            g = self.recv_frame(max(0.01, deadline - time.monotonic()))
            assert g.opcode == OP_CONT, "[%s] server interleaved %r in a message" % (self.case, g)
            parts.append(g.payload)
            if g.fin:
                return Frame(True, 0, f.opcode, b"".join(parts))

    def expect_message(self, opcode, payload, case=None, timeout=TIMEOUT):
        case = case or self.case
        if isinstance(payload, str):
            payload = payload.encode()
        m = self.recv_message(timeout)
        assert m.opcode == opcode, "[%s] expected opcode %d, got %r" % (case, opcode, m)
        if len(payload) > 1024:
            assert len(m.payload) == len(payload), "[%s] echoed %d bytes, sent %d" % (
                case, len(m.payload), len(payload))
            assert hashlib.sha256(m.payload).digest() == hashlib.sha256(payload).digest(), \
                "[%s] echoed payload differs" % case
        else:
            assert m.payload == payload, "[%s] expected %r, got %r" % (case, payload, m.payload)
        return m

    def expect_pong(self, payload, case=None, timeout=TIMEOUT):
        return self.expect_message(OP_PONG, payload, case, timeout)

    def expect_eof(self, case=None, timeout=FAST, allow_reset=False):
        """The server must close TCP (recv returns b'') within `timeout`, with
        nothing more sent. allow_reset: a RST counts as closed too (when we
        had sent bytes the server never read)."""
        case = case or self.case
        assert not self.buf, "[%s] data after close: %r" % (case, bytes(self.buf[:80]))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "[%s] server did not close TCP within %.1fs" % (case, timeout)
            r, _, _ = select.select([self.sock], [], [], remaining)
            if not r:
                continue
            try:
                b = self.sock.recv(65536)
            except ConnectionResetError:
                assert allow_reset, "[%s] connection reset instead of a clean close" % case
                return
            assert b == b"", "[%s] data after close frame: %r" % (case, b[:80])
            return

    def expect_close(self, code, case=None, timeout=FAST, allow_reset=False, eof=True):
        """Next frame must be a Close with `code` (None: empty payload or 1000
        for an empty close), then TCP must close."""
        case = case or self.case
        f = self.recv_frame(timeout)
        assert f.opcode == OP_CLOSE, "[%s] expected close %s, got %r" % (case, code, f)
        got = f.close_code()
        if code is None:
            assert got in (None, 1000), "[%s] expected empty/1000 close, got %r" % (case, f)
        else:
            assert got == code, "[%s] expected close %d, got %r (reason %r)" % (
                case, code, got, f.payload[2:])
        assert f.fin, "[%s] close frame not final" % case
        try:
            f.payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise AssertionError("[%s] close reason is not UTF-8: %r" % (case, f.payload))
        if eof:
            self.expect_eof(case, allow_reset=allow_reset)
        return f

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def ws_case(port, case):
    return WS(port, case=case)


def quick_echo(port, case):
    """A fresh connection still gets an echo and a clean close: the server
    survived whatever came before."""
    with ws_case(port, case) as ws:
        ws.send_frame(OP_TEXT, "still alive")
        ws.expect_message(OP_TEXT, "still alive")
        ws.send_frame(OP_CLOSE, close_payload(1000))
        ws.expect_close(1000)


def expect_no_ws_left(port, case):
    """Every WebSocket of the group is gone from ferryd's gauge (bounded wait)."""
    deadline = time.monotonic() + 5
    while True:
        n = metrics(port).get('ferry_connections{transport="websocket"}')
        if n == 0:
            return
        assert time.monotonic() < deadline, "[%s] ferryd still counts %r websockets" % (case, n)
        time.sleep(0.05)


def text_of(n):
    """n bytes of valid UTF-8 with 1-4 byte characters (padded with ASCII)."""
    unit = "ferry ✓ κόσμε 😀 ß ".encode()
    b = (unit * (n // len(unit) + 1))[:n]
    # back off to a character boundary, pad with ASCII
    cut = len(b)
    while cut > 0 and (b[cut - 1] & 0xC0) == 0x80:
        cut -= 1
    if cut > 0 and b[cut - 1] >= 0xC0:
        cut -= 1
    return b[:cut] + b"x" * (n - cut)


SIZES = [0, 125, 126, 127, 128, 65535, 65536]


# ---------------------------------------------------------------- 1.x --------
def test_1_framing():
    with Ferry(*FERRY_ARGS) as f:
        for group, op in (("1.1", OP_TEXT), ("1.2", OP_BIN)):
            for i, n in enumerate(SIZES, 1):
                case = "%s.%d" % (group, i)
                payload = text_of(n) if op == OP_TEXT else bytes([0xFE]) * n
                with ws_case(f.port, case) as ws:
                    ws.send_frame(op, payload)
                    ws.expect_message(op, payload)
                    ws.send_frame(OP_CLOSE, close_payload(1000))
                    ws.expect_close(1000)
            # x.8: 65536 bytes written in small chunks (997 bytes, as Autobahn)
            case = group + ".8"
            payload = text_of(65536) if op == OP_TEXT else bytes(range(256)) * 256
            with ws_case(f.port, case) as ws:
                ws.send_frame(op, payload, chunk=997)
                ws.expect_message(op, payload)
            # and a short message written 1 byte at a time
            case = group + ".8b"
            payload = text_of(125) if op == OP_TEXT else bytes(range(125))
            with ws_case(f.port, case) as ws:
                ws.send_frame(op, payload, chunk=1)
                ws.expect_message(op, payload)
                ws.send_frame(OP_CLOSE, close_payload(1000), chunk=1)
                ws.expect_close(1000)
        # several messages on one connection, in one write, keep their order
        with ws_case(f.port, "1.x-pipelined") as ws:
            msgs = [(OP_TEXT, text_of(n)) if n % 2 else (OP_BIN, os.urandom(n)) for n in SIZES]
            ws.send(b"".join(frame(op, p) for op, p in msgs))
            for op, p in msgs:
                ws.expect_message(op, p)
        quick_echo(f.port, "1.x-survive")
        expect_no_ws_left(f.port, "1.x-no-leak")


# ---------------------------------------------------------------- 2.x --------
def test_2_pings_pongs():
    with Ferry(*FERRY_ARGS) as f:
        p = f.port
        with ws_case(p, "2.1") as ws:
            ws.send_frame(OP_PING, b"")
            ws.expect_pong(b"")
            ws.send_frame(OP_CLOSE, close_payload(1000))
            ws.expect_close(1000)
        with ws_case(p, "2.2") as ws:
            ws.send_frame(OP_PING, b"Hello, world!")
            ws.expect_pong(b"Hello, world!")
        with ws_case(p, "2.3") as ws:
            ws.send_frame(OP_PING, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")
            ws.expect_pong(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")
        with ws_case(p, "2.4") as ws:
            ws.send_frame(OP_PING, b"\xfe" * 125)
            ws.expect_pong(b"\xfe" * 125)
        with ws_case(p, "2.5") as ws:
            ws.send_frame(OP_PING, b"\xfe" * 126)
            ws.expect_close(1002)
        with ws_case(p, "2.6") as ws:
            ws.send_frame(OP_PING, b"\xfe" * 125, chunk=1)
            ws.expect_pong(b"\xfe" * 125)
            ws.send_frame(OP_CLOSE, close_payload(1000))
            ws.expect_close(1000)
        with ws_case(p, "2.7") as ws:
            # unsolicited pong, empty: ignored; the close is the next thing we get
            ws.send_frame(OP_PONG, b"")
            ws.send_frame(OP_CLOSE, close_payload(1000))
            ws.expect_close(1000)
        with ws_case(p, "2.8") as ws:
            ws.send_frame(OP_PONG, b"unsolicited pong payload")
            ws.send_frame(OP_CLOSE, close_payload(1000))
            ws.expect_close(1000)
        with ws_case(p, "2.9") as ws:
            ws.send_frame(OP_PONG, b"unsolicited pong payload")
            ws.send_frame(OP_PING, b"ping payload")
            ws.expect_pong(b"ping payload")
            ws.send_frame(OP_CLOSE, close_payload(1000))
            ws.expect_close(1000)
        with ws_case(p, "2.10") as ws:
            pings = [("payload-%d" % i).encode() for i in range(10)]
            ws.send(b"".join(frame(OP_PING, x) for x in pings))
            for x in pings:
                ws.expect_pong(x)
            ws.send_frame(OP_CLOSE, close_payload(1000))
            ws.expect_close(1000)
        with ws_case(p, "2.11") as ws:
            pings = [("payload-%d" % i).encode() for i in range(10)]
            ws.send(b"".join(frame(OP_PING, x) for x in pings), chunk=1)
            for x in pings:
                ws.expect_pong(x)
            ws.send_frame(OP_CLOSE, close_payload(1000))
            ws.expect_close(1000)
        with ws_case(p, "2.x-pong-between-text") as ws:
            ws.send_frame(OP_TEXT, "a")
            ws.send_frame(OP_PONG, b"x")
            ws.send_frame(OP_TEXT, "b")
            ws.expect_message(OP_TEXT, "a")
            ws.expect_message(OP_TEXT, "b")
        quick_echo(p, "2.x-survive")
        expect_no_ws_left(p, "2.x-no-leak")


# ---------------------------------------------------------------- 3.x --------
def test_3_reserved_bits():
    with Ferry(*FERRY_ARGS) as f:
        p = f.port
        with ws_case(p, "3.1") as ws:
            ws.send_frame(OP_TEXT, "Hello, world!", rsv=4)   # RSV1
            ws.expect_close(1002)
        with ws_case(p, "3.2") as ws:
            ws.send_frame(OP_TEXT, "Hello, world!")
            ws.expect_message(OP_TEXT, "Hello, world!")
            ws.send_frame(OP_TEXT, "Hello, world!", rsv=2)   # RSV2
            ws.expect_close(1002)
        with ws_case(p, "3.3") as ws:
            # valid text, RSV1|RSV2 text, ping -- all in one write: the echo of
            # the first comes back, then the close; the ping is never answered
            ws.send(frame(OP_TEXT, "Hello, world!") + frame(OP_TEXT, "Hello, world!", rsv=6)
                    + frame(OP_PING, b""))
            ws.expect_message(OP_TEXT, "Hello, world!")
            ws.expect_close(1002, allow_reset=True)
        with ws_case(p, "3.4") as ws:
            ws.send(frame(OP_TEXT, "Hello, world!") + frame(OP_TEXT, "Hello, world!", rsv=1)
                    + frame(OP_PING, b""), chunk=1, may_close=True)
            ws.expect_message(OP_TEXT, "Hello, world!")
            ws.expect_close(1002, allow_reset=True)
        with ws_case(p, "3.5") as ws:
            ws.send_frame(OP_BIN, bytes(range(8)), rsv=5)
            ws.expect_close(1002)
        with ws_case(p, "3.6") as ws:
            ws.send_frame(OP_PING, b"Hello, world!", rsv=6)
            ws.expect_close(1002)
        with ws_case(p, "3.7") as ws:
            ws.send_frame(OP_CLOSE, close_payload(1000), rsv=7)
            ws.expect_close(1002)
        with ws_case(p, "3.x-continuation-rsv") as ws:
            ws.send_frame(OP_TEXT, "frag", fin=False)
            ws.send_frame(OP_CONT, "ment", rsv=4)
            ws.expect_close(1002)
        quick_echo(p, "3.x-survive")
        expect_no_ws_left(p, "3.x-no-leak")


# ---------------------------------------------------------------- 4.x --------
def test_4_opcodes():
    with Ferry(*FERRY_ARGS) as f:
        p = f.port
        for i, op in enumerate((3, 4, 5, 6, 7), 1):
            case = "4.1.%d" % i
            with ws_case(p, case) as ws:
                if i % 2:
                    ws.send_frame(op, b"")
                else:
                    ws.send_frame(OP_TEXT, "Hello, world!")
                    ws.expect_message(OP_TEXT, "Hello, world!")
                    ws.send_frame(op, b"reserved opcode payload")
                ws.expect_close(1002)
        for i, op in enumerate((11, 12, 13, 14, 15), 1):
            case = "4.2.%d" % i
            with ws_case(p, case) as ws:
                if i % 2:
                    ws.send_frame(op, b"")
                else:
                    ws.send_frame(OP_TEXT, "Hello, world!")
                    ws.expect_message(OP_TEXT, "Hello, world!")
                    ws.send_frame(op, b"reserved opcode payload")
                ws.expect_close(1002)
        # 4.x.5 style: valid text, reserved opcode, ping in one write
        with ws_case(p, "4.2.5b") as ws:
            ws.send(frame(OP_TEXT, "Hello, world!") + frame(15, b"x") + frame(OP_PING, b""))
            ws.expect_message(OP_TEXT, "Hello, world!")
            ws.expect_close(1002, allow_reset=True)
        quick_echo(p, "4.x-survive")
        expect_no_ws_left(p, "4.x-no-leak")


# ---------------------------------------------------------------- 5.x --------
def test_5_fragmentation():
    with Ferry(*FERRY_ARGS) as f:
        p = f.port
        with ws_case(p, "5.1") as ws:
            ws.send_frame(OP_PING, "frag1", fin=False)
            ws.send_frame(OP_CONT, "frag2")
            ws.expect_close(1002, allow_reset=True)
        with ws_case(p, "5.2") as ws:
            ws.send_frame(OP_PONG, "frag1", fin=False)
            ws.send_frame(OP_CONT, "frag2")
            ws.expect_close(1002, allow_reset=True)
        for case, op, chunk in (("5.3", OP_TEXT, None), ("5.4", OP_TEXT, 1),
                                ("5.3b", OP_BIN, None), ("5.4b", OP_BIN, 1)):
            with ws_case(p, case) as ws:
                ws.send(frame(op, "frag1", fin=False) + frame(OP_CONT, "frag2"), chunk=chunk)
                ws.expect_message(op, "frag1frag2")
        for case, op in (("5.x-many-text", OP_TEXT), ("5.x-many-bin", OP_BIN)):
            with ws_case(p, case) as ws:
                whole = text_of(5000) if op == OP_TEXT else os.urandom(5000)
                parts = [whole[i:i + 97] for i in range(0, len(whole), 97)]
                data = [frame(op if i == 0 else OP_CONT, x, fin=(i == len(parts) - 1))
                        for i, x in enumerate(parts)]
                ws.send(b"".join(data))
                ws.expect_message(op, whole)
        with ws_case(p, "5.x-empty-fragments") as ws:
            ws.send(frame(OP_TEXT, "", fin=False) + frame(OP_CONT, "", fin=False)
                    + frame(OP_CONT, "abc", fin=False) + frame(OP_CONT, ""))
            ws.expect_message(OP_TEXT, "abc")
        for case, chunk in (("5.6", None), ("5.7", 1)):
            with ws_case(p, case) as ws:
                ws.send(frame(OP_TEXT, "fragment1", fin=False) + frame(OP_PING, "ping payload")
                        + frame(OP_CONT, "fragment2"), chunk=chunk)
                ws.expect_pong("ping payload")
                ws.expect_message(OP_TEXT, "fragment1fragment2")
        with ws_case(p, "5.8") as ws:
            # pong interleaved: ignored, message still echoed
            ws.send(frame(OP_TEXT, "fragment1", fin=False) + frame(OP_PONG, "pong payload")
                    + frame(OP_CONT, "fragment2"))
            ws.expect_message(OP_TEXT, "fragment1fragment2")
        with ws_case(p, "5.19") as ws:
            # fragments with pauses, two pings between them; pongs come at once
            ws.send_frame(OP_TEXT, "fragment1", fin=False)
            ws.send_frame(OP_CONT, "fragment2", fin=False)
            ws.send_frame(OP_PING, "pongme 1!")
            ws.expect_pong("pongme 1!", timeout=FAST)
            time.sleep(0.2)
            ws.send_frame(OP_CONT, "fragment3", fin=False)
            ws.send_frame(OP_PING, "pongme 2!")
            ws.expect_pong("pongme 2!", timeout=FAST)
            ws.send_frame(OP_CONT, "fragment4")
            ws.expect_message(OP_TEXT, "fragment1fragment2fragment3fragment4")
        for case, chunk in (("5.9", None), ("5.10", 1)):
            with ws_case(p, case) as ws:
                ws.send(frame(OP_CONT, "non-continuation payload") + frame(OP_TEXT, "Hello, world!"),
                        chunk=chunk, may_close=True)
                ws.expect_close(1002, allow_reset=True)
        with ws_case(p, "5.13") as ws:
            ws.send_frame(OP_CONT, "fragment1", fin=False)
            ws.expect_close(1002)
        with ws_case(p, "5.16") as ws:
            ws.send(frame(OP_CONT, "fragment1", fin=False) + frame(OP_TEXT, "fragment2", fin=False)
                    + frame(OP_CONT, "fragment3"))
            ws.expect_close(1002, allow_reset=True)
        with ws_case(p, "5.18") as ws:
            ws.send_frame(OP_TEXT, "fragment1", fin=False)
            ws.send_frame(OP_TEXT, "fragment2")
            ws.expect_close(1002)
        with ws_case(p, "5.18b") as ws:
            ws.send_frame(OP_BIN, "fragment1", fin=False)
            ws.send_frame(OP_BIN, "fragment2", fin=False)
            ws.expect_close(1002)
        with ws_case(p, "5.x-fragments-byte-by-byte") as ws:
            whole = text_of(300)
            parts = [whole[:100], whole[100:200], whole[200:]]
            data = b"".join(frame(OP_TEXT if i == 0 else OP_CONT, x, fin=(i == 2))
                            for i, x in enumerate(parts))
            ws.send(data, chunk=1)
            ws.expect_message(OP_TEXT, whole)
        quick_echo(p, "5.x-survive")
        expect_no_ws_left(p, "5.x-no-leak")


# ---------------------------------------------------------------- 6.x --------
VALID_UTF8 = [
    ("6.2.1", "Hello-µ@ßöäüàá-UTF-8!!".encode()),
    ("6.2.2", "κόσμε".encode()),
    ("6.2.3", "€ 中文 ✓".encode()),
    ("6.2.4", "😀 𝄞 \U0010FFFF".encode()),
    ("6.3.x-boundaries", "\u0080\u07ff\u0800\uffff\U00010000\U0010FFFF".encode()),
    ("6.3.x-d7ff-e000", "\ud7ff\ue000\ufffd".encode()),
    ("6.3.x-nul", b"a\x00b"),
]

INVALID_UTF8 = [
    ("6.3.1", "κόσμε".encode() + b"\xed\xa0\x80edited"),     # surrogate U+D800
    ("6.8.1", b"\xf8\x88\x80\x80\x80"),                       # 5-byte form
    ("6.9.1", b"\xc0\xaf"),                                   # overlong '/'
    ("6.9.2", b"\xe0\x80\xaf"),                               # overlong '/'
    ("6.9.3", b"\xf0\x80\x80\xaf"),                           # overlong '/'
    ("6.9.4", b"\xc1\xbf"),                                   # overlong U+007F
    ("6.10.1", b"\xed\xbf\xbf"),                              # surrogate U+DFFF
    ("6.11.1", b"\xf4\x90\x80\x80"),                          # > U+10FFFF
    ("6.12.1", b"\x80"),                                      # lone continuation
    ("6.12.2", b"a\xbfb"),
    ("6.13.1", b"\xc0 "),                                     # start byte + space
    ("6.14.1", "κόσμε".encode() + b"\xce"),                   # truncated at end
    ("6.14.2", b"\xe2\x82"),                                  # truncated 3-byte
    ("6.14.3", b"\xf0\x9f\x98"),                              # truncated 4-byte
    ("6.15.1", b"\xf5\x80\x80\x80"),
    ("6.16.1", b"\xfe"),
    ("6.16.2", b"\xff"),
    ("6.16.3", b"\xfe\xfe\xff\xff"),
    ("6.17.1", b"\xed\xa0\x80\xed\xb0\x80"),                  # surrogate pair in CESU form
]


def test_6_utf8():
    with Ferry(*FERRY_ARGS) as f:
        p = f.port
        for case, text in VALID_UTF8:
            with ws_case(p, case) as ws:
                ws.send_frame(OP_TEXT, text)
                ws.expect_message(OP_TEXT, text)
                # the same text fragmented at every byte: split mid-character
                parts = [text[i:i + 1] for i in range(len(text))]
                ws.send(b"".join(frame(OP_TEXT if i == 0 else OP_CONT, x, fin=(i == len(parts) - 1))
                                 for i, x in enumerate(parts)))
                ws.expect_message(OP_TEXT, text, case + "-split")
        with ws_case(p, "6.2.x-split-4byte") as ws:
            t = "a😀b".encode()          # 61 f0 9f 98 80 62
            ws.send(frame(OP_TEXT, t[:3], fin=False) + frame(OP_CONT, t[3:]))
            ws.expect_message(OP_TEXT, t)
        # invalid UTF-8 in close reasons is in 7.x; in binary messages it is fine
        with ws_case(p, "6.x-binary-not-checked") as ws:
            ws.send_frame(OP_BIN, b"\xff\xfe\xed\xa0\x80")
            ws.expect_message(OP_BIN, b"\xff\xfe\xed\xa0\x80")
        for case, bad in INVALID_UTF8:
            with ws_case(p, case) as ws:
                ws.send_frame(OP_TEXT, bad)
                ws.expect_close(1007)
            with ws_case(p, case + "-fragmented") as ws:
                ws.send(b"".join(frame(OP_TEXT if i == 0 else OP_CONT, bad[i:i + 1],
                                       fin=(i == len(bad) - 1)) for i in range(len(bad))))
                ws.expect_close(1007, allow_reset=True)
        # 6.4.x fail fast: the close comes before the rest of the message
        with ws_case(p, "6.4.1") as ws:
            ws.send_frame(OP_TEXT, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"ab", fin=False)
            ws.expect_close(1007)     # before we send the final fragment
        with ws_case(p, "6.4.2") as ws:
            ws.send_frame(OP_TEXT, "κόσμε".encode(), fin=False)
            ws.send_frame(OP_CONT, b"\xf4\x90\x80\x80", fin=False)
            ws.expect_close(1007)
        with ws_case(p, "6.4.3") as ws:
            # one frame announcing 1000 bytes; we send only a first part that
            # contains the bad byte: the server must not wait for the rest
            good = "κόσμε".encode()
            full = good + b"\xed\xa0\x80" + b"x" * (1000 - len(good) - 3)
            key = os.urandom(4)
            wire = frame(OP_TEXT, full, key=key)
            ws.send(wire[:2 + 2 + 4 + len(good) + 3])
            ws.expect_close(1007)
        with ws_case(p, "6.4.4") as ws:
            # the bad byte is the very first byte after a valid first fragment
            ws.send_frame(OP_TEXT, "κόσμε".encode(), fin=False)
            key = os.urandom(4)
            wire = frame(OP_CONT, b"\xc0\xaf" + b"y" * 500, key=key)
            ws.send(wire[:4 + 4 + 1 + 1])
            ws.expect_close(1007)
        quick_echo(p, "6.x-survive")
        m = metrics(p)
        n_bad = 2 * len(INVALID_UTF8) + 4
        assert m['ferry_errors_total{kind="ws_bad_utf8"}'] == n_bad, \
            "[6.x-metrics] ws_bad_utf8 %r, expected %d" % (m['ferry_errors_total{kind="ws_bad_utf8"}'], n_bad)
        assert m['ferry_errors_total{kind="ws_protocol"}'] == 0, "[6.x-metrics] %r" % m
        expect_no_ws_left(p, "6.x-no-leak")


# ---------------------------------------------------------------- 7.x --------
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
               3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


def test_7_close():
    with Ferry(*FERRY_ARGS) as f:
        p = f.port
        with ws_case(p, "7.1.1") as ws:
            ws.send_frame(OP_TEXT, "Hello World!")
            ws.expect_message(OP_TEXT, "Hello World!")
            ws.send_frame(OP_CLOSE, close_payload(1000))
            ws.expect_close(1000)
        with ws_case(p, "7.1.2") as ws:
            # two closes in one write: one close back, then TCP closes
            ws.send(frame(OP_CLOSE, close_payload(1000)) + frame(OP_CLOSE, close_payload(1000)))
            ws.expect_close(1000)
        with ws_case(p, "7.1.3") as ws:
            # ping after our close is ignored (no pong)
            ws.send(frame(OP_CLOSE, close_payload(1000)) + frame(OP_PING, b"after close"))
            ws.expect_close(1000)
        with ws_case(p, "7.1.4") as ws:
            # data after our close is ignored (no echo)
            ws.send(frame(OP_CLOSE, close_payload(1000)) + frame(OP_TEXT, "after close"))
            ws.expect_close(1000)
        with ws_case(p, "7.1.4b") as ws:
            # the same with the data in a later write
            ws.send_frame(OP_CLOSE, close_payload(1000))
            ws.send_frame(OP_TEXT, "after close")
            ws.expect_close(1000, allow_reset=True)
        with ws_case(p, "7.1.5") as ws:
            ws.send(frame(OP_TEXT, "fragment1", fin=False) + frame(OP_CLOSE, close_payload(1000))
                    + frame(OP_CONT, "fragment2"))
            ws.expect_close(1000)
        with ws_case(p, "7.3.1") as ws:
            ws.send_frame(OP_CLOSE, b"")
            ws.expect_close(None)
        with ws_case(p, "7.3.2") as ws:
            ws.send_frame(OP_CLOSE, b"\x03")
            ws.expect_close(1002)
        with ws_case(p, "7.3.3") as ws:
            ws.send_frame(OP_CLOSE, close_payload(1000))
            ws.expect_close(1000)
        with ws_case(p, "7.3.4") as ws:
            ws.send_frame(OP_CLOSE, close_payload(1000, "Hello World! κόσμε"))
            ws.expect_close(1000)
        with ws_case(p, "7.3.4b") as ws:
            ws.send_frame(OP_CLOSE, close_payload(1000, "*" * 123))
            ws.expect_close(1000)
        with ws_case(p, "7.3.5") as ws:
            ws.send_frame(OP_CLOSE, close_payload(1000, "*" * 124))   # 126-byte control frame
            ws.expect_close(1002)
        with ws_case(p, "7.3.6") as ws:
            ws.send_frame(OP_CLOSE, close_payload(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
                                                  b"\xed\xa0\x80\x65\x64\x69\x74\x65\x64"))
            ws.expect_close(1007)
        with ws_case(p, "7.5.1") as ws:
            ws.send_frame(OP_CLOSE, close_payload(1000, b"\xc0\xaf"))
            ws.expect_close(1007)
        for i, code in enumerate(VALID_CODES, 1):
            with ws_case(p, "7.7.%d" % i) as ws:
                ws.send_frame(OP_CLOSE, close_payload(code))
                ws.expect_close(code)
        for i, code in enumerate(INVALID_CODES, 1):
            with ws_case(p, "7.9.%d(%d)" % (i, code)) as ws:
                ws.send_frame(OP_CLOSE, close_payload(code))
                ws.expect_close(1002)
        with ws_case(p, "7.x-unmasked") as ws:
            # a client frame without the mask bit
            ws.send_frame(OP_TEXT, "not masked", mask=False)
            ws.expect_close(1002)
        quick_echo(p, "7.x-survive")
        expect_no_ws_left(p, "7.x-no-leak")


# ---------------------------------------------------------------- 9.x --------
def _big(ws, op, payload, frag, case, timeout=45.0):
    """Send payload as one frame (frag=None) or fragments of `frag` bytes,
    with one mask key (fragment sizes are multiples of 4), and check the echo."""
    key = os.urandom(4)
    n = len(payload)
    masked = mask_bytes(payload, key)
    if frag is None:
        wire = _hdr(op, n, True, key) + masked
    else:
        assert frag % 4 == 0
        pieces = []
        for off in range(0, max(n, 1), frag):
            size = min(frag, n - off)
            last = off + frag >= n
            pieces.append(_hdr(op if off == 0 else OP_CONT, size, last, key))
            pieces.append(masked[off:off + size])
        wire = b"".join(pieces)
    t = ws.send_async(wire)
    ws.case = case
    ws.expect_message(op, payload, case, timeout=timeout)
    t.join(timeout)
    assert not t.is_alive() and t.error is None, "[%s] send failed: %r" % (case, t.error)


def _hdr(op, n, fin, key):
    b0 = (0x80 if fin else 0) | op
    if n < 126:
        h = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        h = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        h = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return h + key


def test_9_limits_performance():
    """Big messages echoed exactly. Every case runs (a failed case gets a new
    connection), and all failures are reported together."""
    sizes = [("64K", 1 << 16), ("256K", 1 << 18), ("1M", 1 << 20), ("4M", 1 << 22), ("16M", 1 << 24)]
    failures = []
    texts = {n: text_of(n) for _, n in sizes}
    bins = {n: os.urandom(n) for _, n in sizes}
    cases = []
    for sub, op, src in (("9.1", OP_TEXT, texts), ("9.2", OP_BIN, bins)):
        for i, (label, n) in enumerate(sizes, 1):
            cases.append(("%s.%d (%s %s single frame)" % (sub, i, label, "text" if op == OP_TEXT else "binary"),
                          op, src[n], None))
    for sub, op, src in (("9.3", OP_TEXT, texts), ("9.4", OP_BIN, bins)):
        for i, (label, n) in enumerate(sizes, 1):
            for frag in (1 << 16, 1 << 12):
                cases.append(("%s.%d (%s %s in %dK fragments)" % (
                    sub, i, label, "text" if op == OP_TEXT else "binary", frag >> 10), op, src[n], frag))
    with Ferry(*FERRY_ARGS) as f:
        ws = None
        for case, op, payload, frag in cases:
            if ws is None:
                ws = ws_case(f.port, case)
            try:
                _big(ws, op, payload, frag, case)
            except (AssertionError, OSError, EOFError) as e:
                failures.append(str(e))
                ws.close()
                ws = None
        if ws is None:
            ws = ws_case(f.port, "9.x-close")
        ws.send_frame(OP_CLOSE, close_payload(1000))
        ws.case = "9.x-close"
        ws.expect_close(1000)
        ws.close()
        quick_echo(f.port, "9.x-survive")
    with Ferry("--echo", "--ws-max-message", "1M", "--drain-window", "100ms") as f:
        limit = 1 << 20
        with ws_case(f.port, "9.x-limit-exact") as ws:
            # exactly the limit is allowed (one message per connection: these
            # cases test the size limit; 9.1-9.4 test several on one)
            _big(ws, OP_TEXT, text_of(limit), 1 << 16, "9.x-limit-exact (1M text in 64K fragments)")
        with ws_case(f.port, "9.x-limit-exact") as ws:
            _big(ws, OP_BIN, os.urandom(limit), None, "9.x-limit-exact (1M binary single frame)")
        for case, op, frag in (("9.x-limit+1 text single frame", OP_TEXT, None),
                               ("9.x-limit+1 binary single frame", OP_BIN, None),
                               ("9.x-limit+1 text in 64K fragments", OP_TEXT, 1 << 16),
                               ("9.x-limit+1 binary in 4K fragments", OP_BIN, 1 << 12)):
            with ws_case(f.port, case) as ws:
                payload = text_of(limit + 1) if op == OP_TEXT else os.urandom(limit + 1)
                key = os.urandom(4)
                masked = mask_bytes(payload, key)
                if frag is None:
                    wire = _hdr(op, len(payload), True, key) + masked
                else:
                    wire = b"".join(_hdr(op if off == 0 else OP_CONT, min(frag, len(payload) - off),
                                         off + frag >= len(payload), key) + masked[off:off + frag]
                                    for off in range(0, len(payload), frag))
                t = ws.send_async(wire)   # may fail: the server may close before reading it all
                ws.expect_close(1009, timeout=TIMEOUT, allow_reset=True)
                t.join(TIMEOUT)
        quick_echo(f.port, "9.x-limit-survive")
        m = metrics(f.port)
        assert m['ferry_errors_total{kind="ws_too_big"}'] == 4, "[9.x-metrics] ws_too_big %r" % (
            m['ferry_errors_total{kind="ws_too_big"}'])
        expect_no_ws_left(f.port, "9.x-no-leak")
    assert not failures, "%d of %d 9.x cases failed:\n  %s" % (
        len(failures), len(cases), "\n  ".join(failures))


if __name__ == "__main__":
    run([test_1_framing, test_2_pings_pongs, test_3_reserved_bits, test_4_opcodes,
         test_5_fragmentation, test_6_utf8, test_7_close, test_9_limits_performance])
