#!/usr/bin/python3
"""test_redis_input.py -- what ferryd reads from Redis is input.

A real redis-server of the test's own; garbage goes straight into the keys
and channels ferryd reads (ferry:{CH}:stream, :epoch, :pub, and FCALL
ferry_publish as a service would): a reserved `ferry` event in history or
on pub/sub, an epoch with a newline, data that is not UTF-8. ferryd drops
each (ferry_errors_total{kind="redis_bad_..."}), never crashes, and its
SSE (format=json), WebSocket and long-poll clients get the next valid message.
"""
import asyncio
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder
from harness import Ferry, metrics, raw_http, run  # noqa: E402
from wsclient import connect, recv_json, subscribe_ok  # noqa: E402
from test_redis import RedisServer, resp_command  # noqa: E402

WAIT = 5.0


def poll(port, query):
    status, _, raw = raw_http(port, "GET", "/ferry/poll?" + query, timeout=WAIT)
    return status, raw


def fcall(r, channel, event, data):
    return resp_command(r.port, "FCALL", "ferry_publish", 2, "ferry:{%s}:stream" % channel,
                        "ferry:{%s}:epoch" % channel, "ferry:{%s}:pub" % channel, 100, 60000,
                        "0badf00d", event, data)


def bad_count(port, kind):
    return metrics(port).get('ferry_errors_total{kind="redis_bad_%s"}' % kind, 0)


def test_history_drops_forged_entries():
    with RedisServer() as r, Ferry("--redis", r.url) as f:
        resp_command(r.port, "SET", "ferry:{h}:epoch", "aaaaaaaa")
        resp_command(r.port, "XADD", "ferry:{h}:stream", "0-1", "e", "ferry", "d", "forged")
        resp_command(r.port, "XADD", "ferry:{h}:stream", "0-2", "e", "", "d", b"\xff\xfe")
        resp_command(r.port, "XADD", "ferry:{h}:stream", "0-3", "e", "", "d", "good")
        st, raw = poll(f.port, "ch=h,aaaaaaaa:0")
        assert st == 200, (st, raw)
        body = json.loads(raw)
        assert [(m["data"], m.get("event")) for m in body["messages"]] == [("good", None)], body
        assert bad_count(f.port, "event") >= 1 and bad_count(f.port, "data") >= 1
        # an epoch with a newline never makes an id
        resp_command(r.port, "SET", "ferry:{n}:epoch", "ab\ncd")
        resp_command(r.port, "XADD", "ferry:{n}:stream", "0-1", "e", "", "d", "x")
        try:
            st, raw = poll(f.port, "ch=n")
        except socket.timeout:
            raw = b""  # the channel is unavailable: held, never a broken id
        assert b"ab\ncd" not in raw and b"ab\\ncd" not in raw, raw
        assert bad_count(f.port, "id") >= 1
        assert f.proc.poll() is None


def test_pubsub_garbage_is_dropped():
    with RedisServer() as r, Ferry("--redis", r.url) as f:
        async def main():
            ws = await connect(f)
            await subscribe_ok(ws, "g")
            for junk in (b"bbbbbbbb:1\nferry\nreserved", b"no newlines", b"bb\x01:2\n\nx",
                         b"bbbbbbbb:3\n\n\xff\xfe", b"bbbbbbbb:x\n\ny"):
                resp_command(r.port, "PUBLISH", "ferry:{g}:pub", junk)
            st, _, raw = raw_http(f.port, "POST", "/ferry/publish/g", {}, b"valid")
            assert st == 200, (st, raw)
            m = await recv_json(ws)
            assert m["type"] == "message" and m["data"] == "valid" and "event" not in m, m
            await ws.close()
        asyncio.run(main())
        assert bad_count(f.port, "event") >= 1 and bad_count(f.port, "id") >= 1
        assert bad_count(f.port, "data") >= 1


def test_non_utf8_service_publish():
    with RedisServer() as r, Ferry("--redis", r.url) as f:
        st, raw = poll(f.port, "ch=u")
        cur = json.loads(raw)["cursors"]["u"]
        sse = socket.create_connection(("127.0.0.1", f.port), timeout=WAIT)
        sse.sendall(b"GET /ferry/sse?ch=u&format=json HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        deadline = time.monotonic() + WAIT
        while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
            buf += sse.recv(65536)

        async def main():
            ws = await connect(f)
            await subscribe_ok(ws, "u")
            time.sleep(0.2)
            fcall(r, "u", "", b"bad \xff\xfe bytes")
            fcall(r, "u", "", "after")
            m = await recv_json(ws)
            assert m["type"] == "message" and m["data"] == "after", m
            await ws.close()
        asyncio.run(main())
        nonlocal_buf = buf
        deadline = time.monotonic() + WAIT
        while b"after" not in nonlocal_buf and time.monotonic() < deadline:
            nonlocal_buf += sse.recv(65536)
        sse.close()
        assert b"after" in nonlocal_buf, nonlocal_buf
        st, raw = poll(f.port, "ch=u," + cur)
        assert st == 200, (st, raw)
        body = json.loads(raw)  # valid JSON
        assert "after" in [m["data"] for m in body["messages"]], body
        assert f.proc.poll() is None, "ferryd died"


if __name__ == "__main__":
    run([test_history_drops_forged_entries, test_pubsub_garbage_is_dropped,
         test_non_utf8_service_publish])
