#!/usr/bin/python3
"""test_binary.py -- binary and JSON messages end to end (issue 14).

The publish API takes any bytes (Content-Type: application/octet-stream)
and JSON (application/json, checked once: 400 with the parser's reason).
A plain python3-websockets client gets a binary message as a text frame
with its metadata ("encoding":"binary") and then exactly the bytes in one
binary frame; SSE (format=json) and long-poll carry base64 with
"encoding":"base64"; a bare EventSource gets the base64 as data. JSON is a
JSON value in the envelope. Memory and Redis backends both keep the bytes
through history, resume and cursors; a client publishes binary over
WebSocket ("encoding":"binary", then a binary frame) and POST send
(base64), and the Redis inbound flow (ferry:in:CH) carries it as base64
with "kind":"binary". Limits count bytes.
"""
import asyncio
import base64
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder
from harness import Ferry, client_id, raw_http, run  # noqa: E402
from wsclient import WAIT, arun, connect, recv_json, subscribe_ok  # noqa: E402
from test_redis import RedisServer, RedisSubscriber, resp_command  # noqa: E402
from test_sse import open_stream, read_messages  # noqa: E402

import websockets  # noqa: E402

BIG = ("--max-body", "2M", "--out-queue-max", "8M")


def publish(port, channel, body, ctype="application/octet-stream", query=""):
    st, _, raw = raw_http(port, "POST", "/ferry/publish/" + channel + query,
                          {"Content-Type": ctype}, body, timeout=WAIT * 2)
    return st, raw


def publish_ok(port, channel, body, ctype="application/octet-stream", query=""):
    st, raw = publish(port, channel, body, ctype, query)
    assert st == 200, (st, raw)
    return json.loads(raw)["id"]


def poll(port, query, timeout=WAIT):
    st, _, raw = raw_http(port, "GET", "/ferry/poll?" + query, timeout=timeout)
    assert st == 200, (st, raw[:300])
    return json.loads(raw)


async def recv_binary_message(ws, timeout=WAIT):
    """A binary message: its text head, then one binary frame."""
    head = await recv_json(ws, timeout)
    assert head["type"] == "message" and head.get("encoding") == "binary", head
    frame = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(frame, bytes), frame[:100]
    assert head["size"] == len(frame), (head, len(frame))
    return head, frame


def decoded(m):
    assert m.get("encoding") == "base64", m
    return base64.b64decode(m["data"], validate=True)


def backends():
    """(name, extra ferryd args, context) for memory and Redis."""
    yield "memory", (), None
    r = RedisServer()
    r.__enter__()
    try:
        yield "redis", ("--redis", r.url), r
    finally:
        r.__exit__(None, None, None)


# ---------------------------------------------------------------- tests

def test_blob_and_chunks_on_every_transport():
    """A 1 MiB random blob and 100 chunks of 16 KiB, published by the app, reach
    a plain WebSocket (one binary frame each), SSE format=json, a bare
    EventSource and long-poll with the same bytes, in order, once; history and
    resume replay them too. Memory and Redis."""
    blob = os.urandom(1 << 20)
    chunks = [os.urandom(16 << 10) for _ in range(100)]
    sent = [blob] + chunks
    for name, args, _ in backends():
        with Ferry(*args, *BIG) as f:
            async def main():
                ws = await connect(f)
                await subscribe_ok(ws, "media")
                sse, _, _ = open_stream(f.port, "ch=media&format=json")
                bare, _, _ = open_stream(f.port, "ch=media")
                first = poll(f.port, "ch=media")
                cursor = first["cursors"]["media"]
                ids = [publish_ok(f.port, "media", b) for b in sent]
                got = []
                for _ in sent:
                    head, frame = await recv_binary_message(ws)
                    assert head["channel"] == "media"
                    got.append((head["id"], frame))
                assert [i for i, _ in got] == ids, name
                assert [hashlib.sha256(b).digest() for _, b in got] == \
                    [hashlib.sha256(b).digest() for b in sent], name
                with sse:
                    blocks = read_messages(sse, len(sent), timeout=20)
                    env = [json.loads(b.data) for b in blocks]
                    assert [m["id"] for m in env] == ids
                    assert [decoded(m) for m in env] == sent, name
                with bare:
                    blocks = read_messages(bare, len(sent), timeout=20)
                    assert [base64.b64decode(b.data, validate=True) for b in blocks] == sent
                # long-poll from the cursor before: every message, in order, once
                out, cur = [], cursor
                deadline = time.monotonic() + 20
                while len(out) < len(sent) and time.monotonic() < deadline:
                    body = poll(f.port, "ch=media,%s" % cur)
                    out += body["messages"]
                    cur = body["cursors"]["media"]
                assert [m["id"] for m in out] == ids, name
                assert [decoded(m) for m in out] == sent, name
                # resume a WebSocket from the middle: history keeps the bytes
                ws2 = await connect(f)
                r = await ws2.send(json.dumps({"type": "subscribe", "channel": "media",
                                               "cursor": ids[50], "ref": 1}))
                r = await recv_json(ws2)
                assert r["type"] == "subscribed", r
                replay = [await recv_binary_message(ws2) for _ in sent[51:]]
                assert [h["id"] for h, _ in replay] == ids[51:]
                assert [b for _, b in replay] == sent[51:], name
                await ws.close()
                await ws2.close()
            arun(main(), 120)
        print("  %s: 1 MiB blob + 100 x 16 KiB on ws/sse/bare sse/poll/resume" % name)


def test_text_stays_text_and_empty_binary():
    with Ferry() as f:
        async def main():
            ws = await connect(f)
            await subscribe_ok(ws, "t")
            publish_ok(f.port, "t", b"plain", ctype="text/plain; charset=utf-8")
            publish_ok(f.port, "t", b"form", ctype="application/x-www-form-urlencoded")
            publish_ok(f.port, "t", b"", ctype="image/png")
            publish_ok(f.port, "t", b"\x00\xff", ctype="audio/ogg", query="?event=chunk")
            m = await recv_json(ws)
            assert m["data"] == "plain" and "encoding" not in m, m
            m = await recv_json(ws)
            assert m["data"] == "form" and "encoding" not in m, m
            h, b = await recv_binary_message(ws)
            assert b == b"" and h["size"] == 0, h
            h, b = await recv_binary_message(ws)
            assert b == b"\x00\xff" and h["event"] == "chunk", h
            # text that is not UTF-8 is still refused, saying what to do
            st, raw = publish(f.port, "t", b"\xff", ctype="text/plain")
            assert st == 400 and b"application/octet-stream" in raw, (st, raw)
            await ws.close()
        arun(main(), 20)


def test_json_payloads():
    """application/json arrives as a JSON value in the envelope on every
    transport; bad JSON gets 400 with the reason; a client's object data is
    JSON too."""
    for name, args, _ in backends():
        with Ferry(*args, "--client-publish") as f:
            async def main():
                ws = await connect(f)
                await subscribe_ok(ws, "j")
                sse, _, _ = open_stream(f.port, "ch=j&format=json")
                cursor = poll(f.port, "ch=j")["cursors"]["j"]
                obj = {"temp": 21.5, "tags": ["a", "b"], "nested": {"ok": True, "n": None}}
                publish_ok(f.port, "j", json.dumps(obj, indent=2).encode(),
                           ctype="application/json")
                st, raw = publish(f.port, "j", b'{"a": 1,', ctype="application/json")
                assert st == 400 and b"invalid JSON" in raw, (st, raw)
                await ws.send(json.dumps({"type": "publish", "channel": "j",
                                          "data": [1, {"x": "y"}], "ref": 5}))
                m = await recv_json(ws)
                if m["type"] == "ack":
                    m = await recv_json(ws)
                assert m["type"] == "message" and m["data"] == obj, m
                m2 = await recv_json(ws)
                if m2["type"] == "ack":
                    m2 = await recv_json(ws)
                assert m2["data"] == [1, {"x": "y"}], m2
                with sse:
                    b = read_messages(sse, 2)
                    assert [json.loads(x.data)["data"] for x in b] == [obj, [1, {"x": "y"}]]
                msgs = poll(f.port, "ch=j,%s" % cursor)["messages"]
                assert [m["data"] for m in msgs] == [obj, [1, {"x": "y"}]], msgs
                await ws.close()
            arun(main(), 30)


def test_client_publishes_binary():
    """With --client-publish: over WebSocket a publish with "encoding":"binary"
    and then a binary frame; over POST send, base64. Subscribers get the exact
    bytes; over Redis, a backend service reads them from ferry:in:CH as base64
    with "kind":"binary"."""
    data = os.urandom(200_000)
    for name, args, r in backends():
        with Ferry(*args, "--client-publish") as f:
            sub = RedisSubscriber(r.port, "SUBSCRIBE", "ferry:in:up") if r else None
            async def main():
                watcher = await connect(f)
                await subscribe_ok(watcher, "up")
                ws = await connect(f)
                await ws.send(json.dumps({"type": "publish", "channel": "up",
                                          "encoding": "binary", "ref": 9}))
                await ws.send(data)
                ack = await recv_json(ws)
                assert ack["type"] == "ack" and ack["ref"] == 9, ack
                _, frame = await recv_binary_message(watcher)
                assert frame == data, name
                if sub:
                    msg = sub.next()
                    inbound = json.loads(msg[2])
                    assert inbound["kind"] == "binary" and inbound["encoding"] == "base64", inbound
                    assert base64.b64decode(inbound["data"]) == data
                    assert inbound["id"] == ack["id"], (inbound, ack)
                # POST send, base64
                cid = client_id(f.port, "sender")
                body = json.dumps({"client": cid, "ops": [
                    {"seq": 1, "type": "publish", "channel": "up", "encoding": "base64",
                     "data": base64.b64encode(data[:1000]).decode()},
                    {"seq": 2, "type": "publish", "channel": "up", "data": {"k": 1}}]})
                st, _, raw = raw_http(f.port, "POST", "/ferry/send",
                                      {"Content-Type": "text/plain"}, body.encode())
                assert st == 200, (st, raw)
                _, frame = await recv_binary_message(watcher)
                assert frame == data[:1000]
                m = await recv_json(watcher)
                assert m["data"] == {"k": 1}, m
                if sub:
                    inbound = json.loads(sub.next()[2])
                    assert base64.b64decode(inbound["data"]) == data[:1000], inbound
                    inbound = json.loads(sub.next()[2])
                    assert inbound["kind"] == "json" and json.loads(inbound["data"]) == {"k": 1}
                # bad base64: the batch is refused with the reason
                body = json.dumps({"client": cid, "ops": [
                    {"seq": 3, "type": "publish", "channel": "up", "encoding": "base64",
                     "data": "not base64!"}]})
                st, _, raw = raw_http(f.port, "POST", "/ferry/send",
                                      {"Content-Type": "text/plain"}, body.encode())
                assert st == 400 and b"base64" in raw, (st, raw)
                await ws.close()
                await watcher.close()
            try:
                arun(main(), 30)
            finally:
                if sub:
                    sub.close()


def test_unannounced_binary_and_limits():
    """A binary frame with no publish before it: close 1003 with a reason. A
    text op where the announced binary should be: that publish fails, the op
    stands. --ws-max-message counts a binary message's bytes (1009);
    --max-body a publish's (413)."""
    with Ferry("--client-publish", "--ws-max-message", "1000", "--max-body", "2000") as f:
        async def main():
            ws = await connect(f)
            await ws.send(b"\x00\x01")
            try:
                await asyncio.wait_for(ws.recv(), WAIT)
                raise AssertionError("not closed")
            except websockets.ConnectionClosed as e:
                assert e.rcvd.code == 1003 and "encoding binary" in e.rcvd.reason, e
            # uncompressed: at the bound exactly (random bytes deflate to more)
            ws = await connect(f, compression=None)
            await ws.send(json.dumps({"type": "publish", "channel": "c", "encoding": "binary",
                                      "ref": 1}))
            await ws.send(json.dumps({"type": "ping", "ref": 2}))
            e = await recv_json(ws)
            assert e["type"] == "error" and e["ref"] == 1, e
            p = await recv_json(ws)
            assert p["type"] == "pong" and p["ref"] == 2, p
            await ws.send(json.dumps({"type": "publish", "channel": "c", "encoding": "binary",
                                      "ref": 3}))
            await ws.send(os.urandom(1000))  # at the bound: taken
            a = await recv_json(ws)
            assert a["type"] == "ack" and a["ref"] == 3, a
            await ws.send(json.dumps({"type": "publish", "channel": "c", "encoding": "binary"}))
            await ws.send(os.urandom(1001))
            try:
                await asyncio.wait_for(ws.recv(), WAIT)
                raise AssertionError("not closed")
            except websockets.ConnectionClosed as e:
                assert e.rcvd.code == 1009, e
        arun(main(), 20)
        st, _ = publish(f.port, "c", os.urandom(2000))
        assert st == 200, st
        st, _ = publish(f.port, "c", os.urandom(2001))
        assert st == 413, st


def test_redis_service_publishes_binary():
    """A backend service publishes bytes with FCALL ferry_publish ... KIND
    "binary": subscribers get them; history keeps the kind."""
    data = bytes(range(256)) * 64
    with RedisServer() as r, Ferry("--redis", r.url) as f:
        async def main():
            ws = await connect(f)
            await subscribe_ok(ws, "svc")
            mid = resp_command(r.port, "FCALL", "ferry_publish", 2, "ferry:{svc}:stream",
                               "ferry:{svc}:epoch", "ferry:{svc}:pub", 100, 60000, "0badf00d",
                               "", data, "", "", "", 0, 100, "binary")
            _, frame = await recv_binary_message(ws)
            assert frame == data
            mid = mid.decode() if isinstance(mid, bytes) else mid
            epoch, seq = mid.split(":")
            msgs = poll(f.port, "ch=svc,%s:%d" % (epoch, int(seq) - 1))["messages"]
            assert [decoded(m) for m in msgs] == [data], msgs
            await ws.close()
        arun(main(), 20)


if __name__ == "__main__":
    run([test_blob_and_chunks_on_every_transport, test_text_stays_text_and_empty_binary,
         test_json_payloads, test_client_publishes_binary, test_unannounced_binary_and_limits,
         test_redis_service_publishes_binary])
