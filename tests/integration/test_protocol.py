#!/usr/bin/python3
"""test_protocol.py -- the ferry protocol end to end.

The publish API over urllib, the JSON protocol over python websockets, the
WebSocket handshake checks and the server's flow control (slow consumers,
ping timeouts) over raw sockets.
"""
import asyncio
import base64
import functools
import hashlib
import http.client
import json
import os
import re
import socket
import struct
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Ferry, ID_RE, metrics, run  # noqa: E402
import wsclient  # noqa: E402
from wsclient import OPEN, barrier, recv_json, request  # noqa: E402

import websockets  # noqa: E402  (Debian python3-websockets 10.4)

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---------------------------------------------------------------- helpers

def publish(f, channel, data, event=None, headers=None):
    """POST to the publish API; returns (status, body bytes)."""
    path = "/ferry/publish/" + channel + ("?event=" + event if event else "")
    if isinstance(data, str):
        data = data.encode()
    req = urllib.request.Request(f.url + path, data=data, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def publish_ok(f, channel, data, event=None, headers=None):
    status, body = publish(f, channel, data, event, headers)
    assert status == 200, (status, body)
    mid = json.loads(body)["id"]
    assert ID_RE.match(mid), mid
    return mid


def check_open(hello):
    """What ferry's "open" frame must say: protocol version 1, a hex session id."""
    assert hello["version"] == 1, hello
    assert re.match(r"^[0-9a-f]+$", hello["session"]), hello


async def connect(f, query="", **kw):
    """Open a ferry WebSocket, check and swallow the "open" frame."""
    return await wsclient.connect(f, query, check_open=check_open, **kw)


arun = functools.partial(wsclient.arun, timeout=40)  # the bound of a test's coroutine


# ------------------------------------------------- raw WebSocket (exact bytes)

class RawWS:
    """A minimal, deliberately dumb WebSocket client over a raw socket."""

    def __init__(self, port, path, rcvbuf=None, timeout=5.0):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        OPEN.append(self.sock.close)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           % (path, port, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            b = self.sock.recv(4096)
            assert b, "closed during handshake: %r" % self.buf
            self.buf += b
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        fields = dict((k.strip().lower(), v.strip()) for k, _, v in
                      (line.partition(":") for line in head.decode("latin-1").split("\r\n")[1:]))
        assert fields.get("sec-websocket-accept") == accept, head

    def send_frame(self, opcode, payload=b"", fin=True):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            b = self.sock.recv(1 << 16)
            if not b:
                raise EOFError("connection closed")
            self.buf += b

    def recv_frame(self, timeout=5.0):
        """Return (opcode, payload). Raises EOFError on close, socket.timeout."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames must not be masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n, deadline)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0F, payload

    def close(self):
        self.sock.close()


def raw_upgrade(port, path="/ferry/ws?ch=a", origin=None, version="13",
                key="dGhlIHNhbXBsZSBub25jZQ==", host=None):
    """Send a handshake, return (status, headers, raw response)."""
    lines = ["GET %s HTTP/1.1" % path, "Host: %s" % (host or "127.0.0.1:%d" % port),
             "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: " + version]
    if key is not None:
        lines.append("Sec-WebSocket-Key: " + key)
    if origin is not None:
        lines.append("Origin: " + origin)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            b = s.recv(4096)
            if not b:
                break
            resp += b
    head = resp.partition(b"\r\n\r\n")[0].decode("latin-1")
    status = int(head.split(" ")[1]) if head.startswith("HTTP/1.1 ") else None
    headers = {}
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, resp


# ---------------------------------------------------------------- publish API

def test_publish_api():
    with Ferry() as f:
        async def main():
            ws = await connect(f, "?ch=news")
            sub = await recv_json(ws)
            assert sub == {"type": "subscribed", "channel": "news", "cursor": sub["cursor"]}, sub
            ids = [publish_ok(f, "news", "m%d" % i) for i in range(5)]
            epochs = {ID_RE.match(i).group(1) for i in ids}
            seqs = [int(ID_RE.match(i).group(2)) for i in ids]
            assert len(epochs) == 1, ids
            assert seqs == list(range(seqs[0], seqs[0] + 5)), ids
            assert sub["cursor"] == "%s:%d" % (epochs.pop(), seqs[0] - 1), (sub, ids)
            for i, mid in enumerate(ids):
                m = await recv_json(ws)
                assert m == {"type": "message", "channel": "news", "id": mid, "data": "m%d" % i}, m
            mid = publish_ok(f, "news", "with event", event="price.update")
            m = await recv_json(ws)
            assert m == {"type": "message", "channel": "news", "id": mid, "event": "price.update",
                         "data": "with event"}, m
            # Other channels have their own sequences and are not delivered here.
            other = publish_ok(f, "other", "x")
            assert ID_RE.match(other).group(2) == "1", other
            assert await barrier(ws) == []
            await ws.close()
        arun(main())

        for bad in ("bad!name", "a%20b", "x" * 129, "caf%C3%A9"):
            status, body = publish(f, bad, "data")
            assert status == 400, (bad, status, body)
        status, body = publish(f, "x" * 128, "data")  # longest legal name
        assert status == 200, (status, body)
        for bad in (b"\xff\xfe", b"ok then \xc3\x28", b"\xed\xa0\x80"):
            status, body = publish(f, "news", bad)
            assert status == 400, (bad, status, body)
        status, body = publish(f, "news", "data", event="bad%20event")
        assert status == 400, (status, body)
        # The rejected publishes did not consume ids.
        mid = publish_ok(f, "news", "after")
        assert ID_RE.match(mid).group(2) == "7", mid


def test_publish_key():
    with Ferry("--publish-key", "s3cret") as f:
        status, _ = publish(f, "k", "d")
        assert status == 401, status
        for h in ({"Authorization": "Bearer wrong"}, {"X-Ferry-Key": "wrong"},
                  {"X-Ferry-Key": "s3cre"}, {"X-Ferry-Key": "s3cret2"}):
            status, _ = publish(f, "k", "d", headers=h)
            assert status == 403, (h, status)
        a = publish_ok(f, "k", "d", headers={"Authorization": "Bearer s3cret"})
        b = publish_ok(f, "k", "d", headers={"X-Ferry-Key": "s3cret"})
        assert ID_RE.match(a).group(2) == "1" and ID_RE.match(b).group(2) == "2", (a, b)


def test_roundtrip():
    payloads = ['say "hi" \\o/', "line1\nline2\r\n\ttab", "caf\u00e9 \u65e5\u672c \U0001F680",
                "\u2028\u2029 </script> {\"json\":[1,2]}", "\x01\x1f\x7f", "", " " * 3 + "x" * 60000]
    with Ferry("--client-publish") as f:
        async def main():
            ws = await connect(f, "?ch=rt")
            assert (await recv_json(ws))["type"] == "subscribed"
            pub = await connect(f)
            for p in payloads:
                mid = publish_ok(f, "rt", p)
                m = await recv_json(ws)
                assert m["id"] == mid and m["data"] == p, (p, m)
            # The same through a client publish, acked with the ref and id.
            for i, p in enumerate(payloads):
                ack = await request(pub, {"type": "publish", "channel": "rt", "data": p, "event": "e",
                                          "ref": 100 + i})
                assert ack["type"] == "ack" and ack["ref"] == 100 + i and ack["channel"] == "rt", ack
                m = await recv_json(ws)
                assert m == {"type": "message", "channel": "rt", "id": ack["id"], "event": "e",
                             "data": p}, (p, m)
            await ws.close()
            await pub.close()
        arun(main())


# ---------------------------------------------------------------- JSON ops

def test_subscribe_ops():
    with Ferry("--max-subscriptions", "3") as f:
        async def main():
            ws = await connect(f)
            r = await request(ws, {"type": "subscribe", "channel": "a", "ref": 1})
            assert r["type"] == "subscribed" and r["channel"] == "a" and r["ref"] == 1, r
            r = await request(ws, {"type": "subscribe", "channel": "a", "ref": 2})
            assert r["type"] == "error" and r["code"] == "already_subscribed" and r["ref"] == 2, r
            mid = publish_ok(f, "a", "one")
            m = await recv_json(ws)
            assert m["type"] == "message" and m["id"] == mid, m
            r = await request(ws, {"type": "unsubscribe", "channel": "a", "ref": 3})
            assert r == {"type": "unsubscribed", "channel": "a", "ref": 3}, r
            r = await request(ws, {"type": "unsubscribe", "channel": "a", "ref": 4})
            assert r["type"] == "error" and r["code"] == "not_subscribed" and r["ref"] == 4, r
            publish_ok(f, "a", "not for us")
            assert await barrier(ws) == [], "message delivered after unsubscribe"

            # --max-subscriptions 3
            for i, ch in enumerate(("b", "c", "d")):
                r = await request(ws, {"type": "subscribe", "channel": ch, "ref": 10 + i})
                assert r["type"] == "subscribed" and r["ref"] == 10 + i, r
            r = await request(ws, {"type": "subscribe", "channel": "e", "ref": 20})
            assert r["type"] == "error" and r["code"] == "too_many_subscriptions" and r["ref"] == 20, r
            publish_ok(f, "e", "not subscribed")
            assert await barrier(ws) == []
            # Freeing a slot makes room again.
            r = await request(ws, {"type": "unsubscribe", "channel": "b", "ref": 21})
            assert r["type"] == "unsubscribed", r
            r = await request(ws, {"type": "subscribe", "channel": "e", "ref": 22})
            assert r["type"] == "subscribed" and r["ref"] == 22, r
            await ws.close()

            # Also when the subscriptions come from the URL.
            ws = await connect(f, "?ch=p&ch=q&ch=r")
            subs = [await recv_json(ws) for _ in range(3)]
            assert sorted(s["channel"] for s in subs) == ["p", "q", "r"], subs
            r = await request(ws, {"type": "subscribe", "channel": "s", "ref": 1})
            assert r["code"] == "too_many_subscriptions", r
            await ws.close()
        arun(main())


def test_client_publish_forbidden():
    with Ferry() as f:
        async def main():
            ws = await connect(f, "?ch=a")
            await recv_json(ws)
            r = await request(ws, {"type": "publish", "channel": "a", "data": "x", "ref": 7})
            assert r["type"] == "error" and r["code"] == "forbidden" and r["ref"] == 7, r
            assert await barrier(ws) == [], "a forbidden publish was delivered"
            await ws.close()
        arun(main())
        assert metrics(f.port)["ferry_messages_in_total"] == 0


def test_bad_frames():
    with Ferry() as f:
        async def main():
            ws = await connect(f)
            for bad in ("{bad", "[1,2]", "42", '"str"', '{"type":"nope"}', '{"channel":"a"}',
                        '{"type":"subscribe"}', '{"type":"subscribe","channel":"a","ref":"x"}',
                        '{"type":"subscribe","channel":"a","cursor":5}'):
                await ws.send(bad)
                r = await recv_json(ws)
                assert r["type"] == "error" and r["code"] == "bad_request", (bad, r)
                assert isinstance(r.get("message"), str) and r["message"], r
            # The connection is still fully usable.
            r = await request(ws, {"type": "ping", "ref": 1})
            assert r == {"type": "pong", "ref": 1}, r
            r = await request(ws, {"type": "subscribe", "channel": "a", "ref": 2})
            assert r["type"] == "subscribed", r
            mid = publish_ok(f, "a", "still here")
            m = await recv_json(ws)
            assert m["id"] == mid, m
            await ws.close()
        arun(main())


def test_bad_request_echoes_ref():
    """A well-formed request that is rejected must still be answered with its
    ref, or a client waiting on that ref never hears back."""
    with Ferry() as f:
        async def main():
            ws = await connect(f)
            for i, op in enumerate(({"type": "subscribe", "channel": "bad!name"},
                                    {"type": "subscribe", "channel": ""},
                                    {"type": "unsubscribe"},
                                    {"type": "frobnicate"})):
                op["ref"] = 50 + i
                r = await request(ws, op)
                assert r["type"] == "error" and r["code"] == "bad_request", (op, r)
                assert r.get("ref") == 50 + i, "error for %r lost its ref: %r" % (op, r)
            await ws.close()
        arun(main())


def test_binary_message_closes_1003():
    with Ferry() as f:
        async def main():
            ws = await connect(f, "?ch=a")
            await recv_json(ws)
            await ws.send(b"\x00\x01binary")
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                pass
            assert ws.close_code == 1003, (ws.close_code, ws.close_reason)
        arun(main())


# ---------------------------------------------------------------- handshake

def test_handshake_checks():
    with Ferry() as f:
        p = f.port
        status, headers, resp = raw_upgrade(p)
        assert status == 101, resp
        assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", headers

        for path in ("/ferry/ws?ch=bad!name", "/ferry/ws?ch=" + "x" * 129, "/ferry/ws?ch=ok&ch=b%20d"):
            status, _, resp = raw_upgrade(p, path=path)
            assert status == 400, (path, resp)
            assert b"\r\n\r\n\x81" not in resp, resp

        status, _, resp = raw_upgrade(p, origin="http://127.0.0.1:%d" % p)
        assert status == 101, resp
        status, _, resp = raw_upgrade(p, origin="http://app.example", host="app.example")
        assert status == 101, resp
        for other in ("http://evil.example", "http://127.0.0.1.evil.example", "null",
                      "http://127.0.0.1:%d" % (p + 1 if p < 65535 else p - 1)):
            status, _, resp = raw_upgrade(p, origin=other)
            assert status == 403, (other, resp)

        status, headers, resp = raw_upgrade(p, version="8")
        assert status == 426, resp
        assert headers.get("sec-websocket-version") == "13", headers

        for key in (None, "short", "not base64 at all!!!!!!!", base64.b64encode(b"x" * 17).decode()):
            status, _, resp = raw_upgrade(p, key=key)
            assert status == 400, (key, resp)

        # websockets: ferry.v1 is selected when offered.
        async def main():
            ws = await connect(f, "?ch=a", subprotocols=["ferry.v1"])
            assert ws.subprotocol == "ferry.v1"
            await ws.close()
            ws = await connect(f, "?ch=a", origin="http://127.0.0.1:%d" % p)
            await ws.close()
        arun(main())
        m = metrics(f.port)
        assert m['ferry_errors_total{kind="http_403"}'] == 4, m
        assert m['ferry_errors_total{kind="http_426"}'] == 1, m

    with Ferry("--allow-origin", "https://app.example") as f:
        status, _, resp = raw_upgrade(f.port, origin="https://app.example")
        assert status == 101, resp
        status, _, resp = raw_upgrade(f.port)  # no Origin: not a browser
        assert status == 101, resp
        for other in ("https://evil.example", "http://app.example", "https://app.example:8443",
                      "https://sub.app.example"):
            status, _, resp = raw_upgrade(f.port, origin=other)
            assert status == 403, (other, resp)

    with Ferry("--allow-origin", "*") as f:
        for any_origin in ("https://evil.example", "http://x.test:81", "null"):
            status, _, resp = raw_upgrade(f.port, origin=any_origin)
            assert status == 101, (any_origin, resp)


# ---------------------------------------------------------------- fan-out

def test_fanout():
    n_subs, n_msgs = 50, 20
    with Ferry() as f:
        async def main():
            subs = [await connect(f, "?ch=fan") for _ in range(n_subs)]
            for ws in subs:
                assert (await recv_json(ws))["type"] == "subscribed"
            ids = [publish_ok(f, "fan", "msg-%d" % i) for i in range(n_msgs)]

            async def collect(ws):
                got = [await recv_json(ws) for _ in range(n_msgs)]
                got += await barrier(ws)  # and nothing more
                return got
            results = await asyncio.gather(*(collect(ws) for ws in subs))
            for got in results:
                assert [(m["id"], m["data"]) for m in got] == \
                    [(mid, "msg-%d" % i) for i, mid in enumerate(ids)], got
            for ws in subs:
                await ws.close()
        arun(main())
        m = metrics(f.port)
        assert m["ferry_messages_in_total"] == n_msgs, m
        assert m["ferry_messages_out_total"] >= n_subs * n_msgs, m


# ---------------------------------------------------------------- flow control

def tcp_wmem_max():
    """The largest send buffer the kernel grows a socket's to (bytes)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 << 20


def test_slow_consumer():
    # ferryd writes to a socket whenever the kernel takes bytes, so a reader
    # that stalls first fills its kernel send buffer (autotuned up to
    # tcp_wmem's maximum, 4 MiB by default) and only then ferry's own queue:
    # publish twice that, or the cap is never reached.
    size = 4096
    n = max(1000, 2 * tcp_wmem_max() // size)
    with Ferry("--out-queue-max", "64K") as f:
        async def main():
            good = await connect(f, "?ch=slow")
            assert (await recv_json(good))["type"] == "subscribed"
            slow = RawWS(f.port, "/ferry/ws?ch=slow", rcvbuf=4096)
            op, payload = slow.recv_frame()
            assert op == 1 and json.loads(payload)["type"] == "open", payload
            op, payload = slow.recv_frame()
            assert op == 1 and json.loads(payload)["type"] == "subscribed", payload

            # The normal subscriber reads concurrently while we publish.
            async def read_all():
                return [await recv_json(good, timeout=20) for _ in range(n)]
            reader = asyncio.ensure_future(read_all())

            def publish_all():
                conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=10)
                ids = []
                for i in range(n):
                    body = ("%05d" % i).encode() + b"p" * (size - 5)
                    conn.request("POST", "/ferry/publish/slow", body=body)
                    r = conn.getresponse()
                    assert r.status == 200, r.status
                    ids.append(json.loads(r.read())["id"])
                conn.close()
                return ids
            ids = await asyncio.get_running_loop().run_in_executor(None, publish_all)
            got = await asyncio.wait_for(reader, 30)
            assert [m["id"] for m in got] == ids, "the normal subscriber missed or reordered messages"
            assert all(m["data"].startswith("%05d" % i) and len(m["data"]) == size
                       for i, m in enumerate(got))
            await good.close()

            # Now the slow one reads: some messages (in order), then Close 4008.
            seen, close = [], None
            try:
                while close is None:
                    op, payload = slow.recv_frame(timeout=5)
                    if op == 8:
                        close = payload
                    else:
                        assert op == 1, op
                        seen.append(json.loads(payload)["id"])
            except (EOFError, ConnectionResetError, socket.timeout):
                pass
            slow.close()
            assert close is not None, "no Close frame after %d messages" % len(seen)
            code = struct.unpack("!H", close[:2])[0]
            assert code == 4008, (code, close)
            assert b"slow consumer" in close[2:], close
            assert seen == ids[:len(seen)], "slow consumer's messages were not a prefix of the stream"
            assert len(seen) < n, "the slow consumer got everything: it was never slow"
        arun(main(), timeout=50)
        m = metrics(f.port)
        assert m["ferry_drops_total"] >= 1, m
        assert m['ferry_errors_total{kind="slow_consumer"}'] >= 1, m


def test_ping_timeout():
    with Ferry("--ws-ping", "300ms", "--ws-pong-timeout", "300ms") as f:
        async def main():
            # websockets answers pings by itself.
            good = await connect(f, "?ch=p")
            await recv_json(good)

            mute = RawWS(f.port, "/ferry/ws?ch=p")
            t0 = time.monotonic()
            pings, closed_by = 0, None
            deadline = t0 + 4
            while time.monotonic() < deadline:
                try:
                    op, payload = await asyncio.get_running_loop().run_in_executor(
                        None, mute.recv_frame, max(0.05, deadline - time.monotonic()))
                except (EOFError, ConnectionResetError):
                    closed_by = "eof"
                    break
                except socket.timeout:
                    break
                if op == 9:
                    pings += 1
                    assert payload == b"ferry", payload
                elif op == 8:
                    closed_by = "close frame"
                    # the server then closes TCP
                    try:
                        while True:
                            await asyncio.get_running_loop().run_in_executor(None, mute.recv_frame, 2)
                    except (EOFError, ConnectionResetError):
                        pass
                    break
            elapsed = time.monotonic() - t0
            mute.close()
            assert closed_by, "a client that never answers pings was not dropped within 4s"
            assert pings >= 1, "dropped without being pinged"
            assert elapsed <= 2.0, "dropped only after %.2fs" % elapsed

            # Meanwhile the answering client, silent apart from its pongs for
            # several ping periods, is still connected and working.
            await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - t0)))
            r = await request(good, {"type": "ping", "ref": 1})
            assert r == {"type": "pong", "ref": 1}, r
            mid = publish_ok(f, "p", "alive")
            m = await recv_json(good)
            assert m["id"] == mid, m
            await good.close()
        arun(main())
        m = metrics(f.port)
        assert m['ferry_errors_total{kind="ws_ping_timeout"}'] == 1, m


if __name__ == "__main__":
    run([test_publish_api, test_publish_key, test_roundtrip, test_subscribe_ops,
         test_client_publish_forbidden, test_bad_frames, test_bad_request_echoes_ref,
         test_binary_message_closes_1003, test_handshake_checks, test_fanout, test_slow_consumer,
         test_ping_timeout])
