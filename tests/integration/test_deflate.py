#!/usr/bin/python3
"""test_deflate.py -- permessage-deflate (RFC 7692, issue 14).

python3-websockets offers the extension by default: ferryd takes it with
server_no_context_takeover and client_no_context_takeover. Each channel
message is compressed at most once, however many subscribers negotiated it
(ferry_ws_deflate_compressions_total, with 1,000 subscribers); messages
under --ws-deflate-min go uncompressed (RSV1 clear, read on a raw socket);
--ws-deflate=off declines every offer; a client's compressed messages are
inflated, and one that inflates past --ws-max-message (a 100 MiB bomb) is
closed with 1009 while ferryd's RSS stays bounded.
"""
import asyncio
import json
import os
import socket
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Ferry, metrics, raw_http, run  # noqa: E402
from wsclient import WAIT, arun, connect, recv_json, subscribe_ok  # noqa: E402

import websockets  # noqa: E402

ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def publish(port, channel, body, ctype="application/json"):
    st, _, raw = raw_http(port, "POST", "/ferry/publish/" + channel, {"Content-Type": ctype}, body)
    assert st == 200, (st, raw)
    return json.loads(raw)["id"]


def compressions(port):
    return metrics(port).get("ferry_ws_deflate_compressions_total", 0)


def typical_json(i):
    return json.dumps({"type": "quote", "seq": i, "symbol": "ACME", "bid": 101.25, "ask": 101.5,
                       "venue": "example-exchange", "tags": ["equity", "nasdaq", "realtime"],
                       "text": "the quick brown fox jumps over the lazy dog " * 4}).encode()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RawWS:
    """A WebSocket on a plain socket, to see RSV1 and send forged frames."""

    def __init__(self, port, extensions=ANSWER.split(";")[0], path="/ferry/ws?ch=raw"):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n" % (path, port))
        if extensions:
            req += "Sec-WebSocket-Extensions: %s\r\n" % extensions
        self.s.sendall((req + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(65536)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.head = head.decode()
        assert self.head.startswith("HTTP/1.1 101"), self.head

    def header(self, name):
        for line in self.head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == name.lower():
                return v.strip()
        return None

    def _need(self, n):
        while len(self.buf) < n:
            b = self.s.recv(1 << 20)
            if not b:
                raise EOFError("closed")
            self.buf += b

    def frame(self):
        """(fin, rsv1, opcode, payload)"""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, at = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, at = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(at + n)
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload

    def send(self, opcode, payload, rsv1=False):
        mask = os.urandom(4)
        b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
        n = len(payload)
        hdr = bytes([b0]) + (bytes([0x80 | n]) if n < 126 else
                             bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                             bytes([0x80 | 127]) + struct.pack(">Q", n))
        masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload)) if n < 4096 else \
            (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        self.s.sendall(hdr + mask + masked)

    def close(self):
        self.s.close()


def deflate_raw(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate_raw(data):
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


# ---------------------------------------------------------------- tests

def test_negotiated_and_compressed_once():
    """python3-websockets negotiates; 1,000 subscribers get 20 compressible JSON
    messages; each was compressed once."""
    with Ferry("--max-connections", "5000") as f:
        async def main():
            subs = []
            for i in range(0, 1000, 100):
                subs += await asyncio.gather(*[connect(f, "?ch=fan") for _ in range(100)])
            for ws in subs:
                assert [e.name for e in ws.extensions] == ["permessage-deflate"], ws.extensions
            # the server took our offer without context takeover either side
            ext = subs[0].response_headers["Sec-WebSocket-Extensions"]
            assert ext == ANSWER, ext
            await asyncio.sleep(0.3)
            before = compressions(f.port)
            sent = [typical_json(i) for i in range(20)]
            for body in sent:
                publish(f.port, "fan", body)

            async def drain(ws):
                got = []
                while len(got) < len(sent):
                    m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if m["type"] == "message":
                        got.append(m["data"])
                return got
            results = await asyncio.gather(*[drain(ws) for ws in subs])
            want = [json.loads(b) for b in sent]
            assert all(r == want for r in results), "a subscriber got other data"
            m = metrics(f.port)
            assert m["ferry_ws_deflate_compressions_total"] - before == len(sent), m
            out = m["ferry_ws_deflate_bytes_out_total"]
            plain = m["ferry_ws_deflate_bytes_uncompressed_total"]
            assert 0 < out < plain, (out, plain)
            print("  1000 subscribers x 20 messages: %d compressions; %d bytes out, %d uncompressed"
                  " (ratio %.2f)" % (m["ferry_ws_deflate_compressions_total"] - before, out, plain,
                                    plain / out))
            for ws in subs:
                await ws.close()
        arun(main(), 120)


def test_threshold_and_raw_frames():
    """Under --ws-deflate-min: RSV1 clear; at it: RSV1 set, and the payload
    inflates (without context) to the envelope. A binary message's head stays
    uncompressed; its bytes frame is compressed when that pays."""
    with Ferry("--ws-deflate-min", "200") as f:
        r = RawWS(f.port)
        assert r.header("Sec-WebSocket-Extensions") == ANSWER, r.head
        fin, rsv1, op, p = r.frame()
        assert op == 1 and json.loads(p)["type"] == "open" and not rsv1
        r.frame()  # subscribed
        publish(f.port, "raw", b'{"small":1}')
        fin, rsv1, op, p = r.frame()
        assert not rsv1 and json.loads(p)["data"] == {"small": 1}, p
        big = typical_json(1)
        publish(f.port, "raw", big)
        fin, rsv1, op, p = r.frame()
        assert rsv1 and op == 1 and fin, (rsv1, op)
        assert json.loads(inflate_raw(p))["data"] == json.loads(big)
        blob = b"\x00\x01" * 5000
        publish(f.port, "raw", blob, ctype="application/octet-stream")
        fin, rsv1, op, head = r.frame()
        assert op == 1 and not rsv1 and json.loads(head)["encoding"] == "binary"
        fin, rsv1, op, p = r.frame()
        assert op == 2 and rsv1 and inflate_raw(p) == blob and len(p) < len(blob) // 10
        rnd = os.urandom(5000)  # does not compress: sent as it is
        publish(f.port, "raw", rnd, ctype="application/octet-stream")
        r.frame()
        fin, rsv1, op, p = r.frame()
        assert op == 2 and not rsv1 and p == rnd
        r.close()
        # without the offer: no extension, no RSV1
        r = RawWS(f.port, extensions=None)
        assert r.header("Sec-WebSocket-Extensions") is None
        r.frame()
        r.frame()
        publish(f.port, "raw", big)
        fin, rsv1, op, p = r.frame()
        assert not rsv1 and json.loads(p)["data"] == json.loads(big)
        r.close()
    # at its maximum nothing is compressed; --ws-deflate=off declines
    for args in (("--ws-deflate-min", "64M"), ("--ws-deflate=off",)):
        with Ferry(*args) as f:
            r = RawWS(f.port)
            neg = r.header("Sec-WebSocket-Extensions")
            r.frame()
            r.frame()
            publish(f.port, "raw", typical_json(2))
            fin, rsv1, op, p = r.frame()
            assert not rsv1 and json.loads(p)["type"] == "message", args
            if args[0] == "--ws-deflate=off":
                assert neg is None, neg
            else:
                assert neg == ANSWER, neg
            r.close()


def test_offers_declined():
    """An offer ferry cannot honour (server_max_window_bits under 15, an
    unknown parameter) is declined; the next acceptable one is taken."""
    with Ferry() as f:
        for offer, want in (("permessage-deflate; server_max_window_bits=10", None),
                            ("permessage-deflate; foo", None),
                            ("permessage-deflate; server_max_window_bits=10, "
                             "permessage-deflate; client_max_window_bits", ANSWER),
                            ("x-webkit-deflate-frame", None)):
            r = RawWS(f.port, extensions=offer)
            assert r.header("Sec-WebSocket-Extensions") == want, (offer, r.head)
            r.close()


def test_client_messages_inflated_and_bomb_refused():
    """A compressed publish from the client is inflated and published; a
    frame inflating to 100 MiB is refused with 1009, and RSS stays bounded;
    RSV1 on a continuation or on a connection without the extension: 1002;
    invalid deflate data: 1007."""
    with Ferry("--client-publish", "--ws-max-message", "1M") as f:
        r = RawWS(f.port, path="/ferry/ws?ch=in")
        r.frame()
        r.frame()
        op = json.dumps({"type": "publish", "channel": "in", "data": "x" * 5000, "ref": 1})
        r.send(1, deflate_raw(op.encode()), rsv1=True)
        seen = []
        for _ in range(2):
            fin, rsv1, opc, p = r.frame()
            seen.append(json.loads(inflate_raw(p) if rsv1 else p))
        assert sorted(m["type"] for m in seen) == ["ack", "message"], seen
        assert [m for m in seen if m["type"] == "message"][0]["data"] == "x" * 5000
        # the bomb: 100 MiB of zeros is about 100 KiB deflated
        bomb = deflate_raw(b"\0" * (100 << 20))
        assert len(bomb) < 1 << 20, len(bomb)
        rss0 = rss_kb(f.proc.pid)
        r.send(2, bomb, rsv1=True)
        fin, rsv1, opc, p = r.frame()
        assert opc == 8 and struct.unpack(">H", p[:2])[0] == 1009, (opc, p)
        assert b"inflated" in p, p
        rss1 = rss_kb(f.proc.pid)
        assert rss1 - rss0 < 40 * 1024, (rss0, rss1)
        print("  bomb of %d bytes (100 MiB inflated): 1009; RSS %d -> %d KiB" %
              (len(bomb), rss0, rss1))
        r.close()
        # RSV1 on a continuation frame
        r = RawWS(f.port, path="/ferry/ws?ch=in")
        r.frame()
        r.frame()
        z = deflate_raw(b'{"type":"ping"}')
        r.s.sendall(b"")
        mask = b"\0\0\0\0"
        r.s.sendall(bytes([0x40 | 1, 0x80 | len(z[:3])]) + mask + z[:3])
        r.s.sendall(bytes([0x80 | 0x40 | 0, 0x80 | len(z[3:])]) + mask + z[3:])
        fin, rsv1, opc, p = r.frame()
        assert opc == 8 and struct.unpack(">H", p[:2])[0] == 1002, p
        r.close()
        # garbage as deflate data
        r = RawWS(f.port, path="/ferry/ws?ch=in")
        r.frame()
        r.frame()
        r.send(1, b"\xff\xff\xff\xff\xff", rsv1=True)
        fin, rsv1, opc, p = r.frame()
        assert opc == 8 and struct.unpack(">H", p[:2])[0] == 1007, p
        r.close()
        # no extension negotiated: RSV1 is a protocol error
        r = RawWS(f.port, extensions=None, path="/ferry/ws?ch=in")
        r.frame()
        r.frame()
        r.send(1, z, rsv1=True)
        fin, rsv1, opc, p = r.frame()
        assert opc == 8 and struct.unpack(">H", p[:2])[0] == 1002, p
        r.close()
        assert f.proc.poll() is None


if __name__ == "__main__":
    run([test_negotiated_and_compressed_once, test_threshold_and_raw_frames, test_offers_declined,
         test_client_messages_inflated_and_bomb_refused])
