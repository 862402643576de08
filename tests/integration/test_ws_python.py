#!/usr/bin/env python3
"""test_ws_python.py -- a real third-party client against ferryd.

Debian's `websockets` library (10.x, asyncio API) talks to
`ferryd --echo --client-publish`: URL subscriptions, HTTP publish, the
ferry.v1 subprotocol, the JSON protocol, library-level ping/pong, a 1 MB
echo, and resuming from a cursor (replay, "too_old", "epoch", "invalid").
"""
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Ferry, run  # noqa: E402

T = 5.0   # bound of any single wait for ferryd
FAST_DRAIN = ("--drain-window", "100ms", "--drain-timeout", "5s")


def publish(f, channel, data, event=None):
    """POST /ferry/publish/<channel>; returns the new message id."""
    url = "%s/ferry/publish/%s" % (f.url, channel) + ("?event=%s" % event if event else "")
    req = urllib.request.Request(url, data=data.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=T) as r:
        assert r.status == 200, r.status
        body = json.loads(r.read())
    assert isinstance(body.get("id"), str), body
    return body["id"]


def seq(msg_id):
    epoch, _, n = msg_id.partition(":")
    assert len(epoch) == 8 and int(epoch, 16) >= 0, msg_id
    return int(n)


async def recv_json(ws, timeout=T):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(raw, str), "ferry frames are text: %r" % (raw,)
    return json.loads(raw)


async def expect(ws, type_, **fields):
    m = await recv_json(ws)
    assert m.get("type") == type_, "expected %s %r, got %r" % (type_, fields, m)
    for k, v in fields.items():
        assert m.get(k) == v, "expected %s=%r in %r" % (k, v, m)
    return m


async def expect_open(ws):
    m = await expect(ws, "open", version=1)
    assert isinstance(m["session"], str) and int(m["session"], 16) >= 0, m
    return m


async def expect_quiet(ws, ref):
    """Nothing else is pending: a protocol ping's pong is the very next frame."""
    await ws.send(json.dumps({"type": "ping", "ref": ref}))
    await expect(ws, "pong", ref=ref)


def connect(f, path, **kw):
    kw.setdefault("open_timeout", T)
    kw.setdefault("close_timeout", T)
    return websockets.connect(f.ws_url + path, **kw)


def arun(coro, timeout=30):
    asyncio.run(asyncio.wait_for(coro, timeout))


def test_url_subscribe_http_publish():
    async def main(f):
        async with connect(f, "/ferry/ws?ch=news", subprotocols=["ferry.v1"]) as ws:
            assert ws.subprotocol == "ferry.v1", ws.subprotocol
            await expect_open(ws)
            sub = await expect(ws, "subscribed", channel="news")
            assert sub["cursor"].endswith(":0"), sub          # empty channel
            mid = await asyncio.to_thread(publish, f, "news", "hello κόσμε ✓")
            assert seq(mid) == 1, mid
            m = await expect(ws, "message", channel="news", id=mid, data="hello κόσμε ✓")
            assert "event" not in m, m
            mid2 = await asyncio.to_thread(publish, f, "news", '{"x": "quoted \\" json"}', "update")
            assert seq(mid2) == 2 and mid2.split(":")[0] == mid.split(":")[0], (mid, mid2)
            await expect(ws, "message", channel="news", id=mid2, event="update",
                         data='{"x": "quoted \\" json"}')
        # two channels by repeating ch; no subprotocol offered: none selected;
        # a same-host Origin is accepted
        async with connect(f, "/ferry/ws?ch=a&ch=b.c:d", origin="http://127.0.0.1:%d" % f.port) as ws:
            assert ws.subprotocol is None, ws.subprotocol
            await expect_open(ws)
            chans = {(await expect(ws, "subscribed"))["channel"] for _ in range(2)}
            assert chans == {"a", "b.c:d"}, chans
            mid = await asyncio.to_thread(publish, f, "b.c:d", "to b")
            await expect(ws, "message", channel="b.c:d", id=mid, data="to b")
            await expect_quiet(ws, 1)
    with Ferry("--echo", "--client-publish", *FAST_DRAIN) as f:
        arun(main(f))


def test_handshake_refusals():
    async def main(f):
        for path, origin, status in (("/ferry/ws?ch=bad%20name", None, 400),
                                     ("/ferry/ws?ch=" + "x" * 129, None, 400),
                                     ("/ferry/ws?ch=news", "http://evil.example", 403),
                                     ("/ferry/nope", None, 404)):
            try:
                async with connect(f, path, origin=origin):
                    pass
            except websockets.exceptions.InvalidStatusCode as e:
                assert e.status_code == status, (path, origin, e.status_code)
            else:
                raise AssertionError("%s (origin %s) was accepted" % (path, origin))
    with Ferry("--echo", "--client-publish", *FAST_DRAIN) as f:
        arun(main(f))


def test_json_protocol():
    async def main(f):
        async with connect(f, "/ferry/ws", subprotocols=["ferry.v1"]) as ws:
            await expect_open(ws)
            await ws.send(json.dumps({"type": "subscribe", "channel": "news", "ref": 1}))
            await expect(ws, "subscribed", channel="news", ref=1)
            await ws.send(json.dumps({"type": "publish", "channel": "news", "data": "from ws",
                                      "event": "chat", "ref": 2}))
            got = [await recv_json(ws), await recv_json(ws)]
            got.sort(key=lambda m: m["type"])          # ack and message, either order
            ack, msg = got
            assert ack["type"] == "ack" and ack["ref"] == 2 and ack["channel"] == "news", got
            assert msg == {"type": "message", "channel": "news", "id": ack["id"], "event": "chat",
                           "data": "from ws"}, got
            await ws.send(json.dumps({"type": "ping", "ref": 3}))
            await expect(ws, "pong", ref=3)
            # errors keep the connection usable
            await ws.send(json.dumps({"type": "subscribe", "channel": "news", "ref": 4}))
            await expect(ws, "error", ref=4, code="already_subscribed")
            await ws.send(json.dumps({"type": "unsubscribe", "channel": "other", "ref": 5}))
            await expect(ws, "error", ref=5, code="not_subscribed")
            await ws.send("this is not JSON")
            await expect(ws, "error", code="bad_request")
            await ws.send(json.dumps({"type": "subscribe", "channel": "bad name!"}))
            await expect(ws, "error", code="bad_request")
            # unsubscribe: later publishes no longer arrive
            await ws.send(json.dumps({"type": "unsubscribe", "channel": "news", "ref": 7}))
            await expect(ws, "unsubscribed", channel="news", ref=7)
            await asyncio.to_thread(publish, f, "news", "not for us")
            await expect_quiet(ws, 8)
            # publishing to a channel one is not subscribed to is allowed: ack only
            await ws.send(json.dumps({"type": "publish", "channel": "elsewhere", "data": "x", "ref": 9}))
            await expect(ws, "ack", ref=9, channel="elsewhere")
            await expect_quiet(ws, 10)
            # a binary frame is refused with close 1003
            await ws.send(b"\x00\x01")
            try:
                await asyncio.wait_for(ws.recv(), T)
                raise AssertionError("binary frame did not close the connection")
            except websockets.exceptions.ConnectionClosed:
                pass
            assert ws.close_code == 1003, ws.close_code
    with Ferry("--echo", "--client-publish", *FAST_DRAIN) as f:
        arun(main(f))

    async def forbidden(f):
        async with connect(f, "/ferry/ws?ch=news") as ws:
            await expect_open(ws)
            await expect(ws, "subscribed", channel="news")
            await ws.send(json.dumps({"type": "publish", "channel": "news", "data": "x", "ref": 1}))
            await expect(ws, "error", ref=1, code="forbidden")
            await expect_quiet(ws, 2)
    with Ferry(*FAST_DRAIN) as f:      # no --client-publish
        arun(forbidden(f))


def test_json_errors_carry_ref():
    """An invalid request that still had a ref gets its error with that ref,
    so the client can tell which request failed."""
    async def main(f):
        async with connect(f, "/ferry/ws") as ws:
            await expect_open(ws)
            bad = [{"type": "subscribe", "channel": "bad name!", "ref": 11},
                   {"type": "subscribe", "ref": 12},
                   {"type": "frobnicate", "channel": "news", "ref": 13},
                   {"type": "publish", "channel": "news", "ref": 14},
                   {"type": "subscribe", "channel": "news", "cursor": 5, "ref": 15}]
            problems = []
            for req in bad:
                await ws.send(json.dumps(req))
                m = await recv_json(ws)
                if m.get("type") != "error" or m.get("code") != "bad_request" or m.get("ref") != req["ref"]:
                    problems.append("sent %s, got %s" % (json.dumps(req), json.dumps(m)))
            await expect_quiet(ws, 16)
            assert not problems, "errors without the request's ref:\n  " + "\n  ".join(problems)
    with Ferry("--echo", "--client-publish", *FAST_DRAIN) as f:
        arun(main(f))


def test_library_ping_and_echo():
    async def main(f):
        async with connect(f, "/ferry/ws?ch=news") as ws:
            await expect_open(ws)
            waiter = await ws.ping(b"lib-ping")
            await asyncio.wait_for(waiter, T)
            assert not ws.closed
        async with connect(f, "/ferry/echo", max_size=4 << 20) as ws:
            waiter = await ws.ping()
            await asyncio.wait_for(waiter, T)
            text = ("ferry ✓ κόσμε 😀 " * 40000)[:640000]    # multi-byte text, ~1 MB of UTF-8
            data = text.encode()
            assert len(data) > 900000
            await ws.send(text)
            got = await asyncio.wait_for(ws.recv(), T)
            assert got == text, "text echo differs (%d vs %d chars)" % (len(got), len(text))
            blob = os.urandom(1000000)
            await ws.send(blob)
            got = await asyncio.wait_for(ws.recv(), T)
            assert got == blob, "binary echo differs"
            # a fragmented message, sent by the library from an iterable
            await ws.send(["part one, ", "part two, ", "κόσμε"])
            got = await asyncio.wait_for(ws.recv(), T)
            assert got == "part one, part two, κόσμε", got
            await ws.close(1000, "bye")
            assert ws.close_code == 1000, ws.close_code
    with Ferry("--echo", "--client-publish", *FAST_DRAIN) as f:
        arun(main(f))


def test_resume_from_cursor():
    N, M = 5, 4

    async def main(f):
        ids = []
        async with connect(f, "/ferry/ws?ch=news") as ws:
            await expect_open(ws)
            await expect(ws, "subscribed", channel="news")
            for i in range(N):
                ids.append(await asyncio.to_thread(publish, f, "news", "before %d" % i))
            for i in range(N):
                await expect(ws, "message", channel="news", id=ids[i], data="before %d" % i)
        last = ids[-1]
        missed = [await asyncio.to_thread(publish, f, "news", "missed %d" % i) for i in range(M)]
        assert [seq(x) for x in missed] == list(range(N + 1, N + M + 1)), missed
        async with connect(f, "/ferry/ws?ch=news," + last) as ws:
            await expect_open(ws)
            await expect(ws, "subscribed", channel="news")
            for i in range(M):
                m = await recv_json(ws)
                assert m.get("type") != "reset", "resume from a kept cursor got %r" % m
                assert m == {"type": "message", "channel": "news", "id": missed[i],
                             "data": "missed %d" % i}, (i, m)
            live = await asyncio.to_thread(publish, f, "news", "live")
            # the next message is the live one: no duplicate of the replay
            await expect(ws, "message", channel="news", id=live, data="live")
            await expect_quiet(ws, 1)
        # the same through the JSON protocol's cursor field
        async with connect(f, "/ferry/ws") as ws:
            await expect_open(ws)
            await ws.send(json.dumps({"type": "subscribe", "channel": "news", "cursor": missed[1],
                                      "ref": 7}))
            await expect(ws, "subscribed", channel="news", ref=7)
            for mid in missed[2:] + [live]:
                await expect(ws, "message", channel="news", id=mid)
            await expect_quiet(ws, 8)
        # a cursor at the newest message: nothing replayed, no reset
        async with connect(f, "/ferry/ws?ch=news," + live) as ws:
            await expect_open(ws)
            await expect(ws, "subscribed", channel="news")
            await expect_quiet(ws, 9)
        # garbage cursor -> reset "invalid" then all kept history
        async with connect(f, "/ferry/ws?ch=news,garbage") as ws:
            await expect_open(ws)
            await expect(ws, "subscribed", channel="news")
            await expect(ws, "reset", channel="news", reason="invalid", cursor=live)
            for mid in ids + missed + [live]:
                await expect(ws, "message", channel="news", id=mid)
            await expect_quiet(ws, 10)
    with Ferry("--echo", "--client-publish", *FAST_DRAIN) as f:
        arun(main(f))


def test_cursor_too_old():
    async def main(f):
        ids = [await asyncio.to_thread(publish, f, "news", "m%d" % i) for i in range(1, 21)]
        assert [seq(x) for x in ids] == list(range(1, 21)), ids
        for cursor in (ids[0], ids[13]):        # 14 is older than the kept 16..20
            async with connect(f, "/ferry/ws?ch=news," + cursor) as ws:
                await expect_open(ws)
                await expect(ws, "subscribed", channel="news")
                await expect(ws, "reset", channel="news", reason="too_old", cursor=ids[-1])
                for i in range(15, 20):
                    await expect(ws, "message", channel="news", id=ids[i], data="m%d" % (i + 1))
                await expect_quiet(ws, 1)
        # 15 is the newest not kept: the kept 16..20 follow it exactly, no reset
        async with connect(f, "/ferry/ws?ch=news," + ids[14]) as ws:
            await expect_open(ws)
            await expect(ws, "subscribed", channel="news")
            for i in range(15, 20):
                m = await recv_json(ws)
                assert m.get("type") == "message" and m["id"] == ids[i], (i, m)
            await expect_quiet(ws, 2)
    with Ferry("--echo", "--client-publish", "--history-size", "5", "--history-age", "0", *FAST_DRAIN) as f:
        arun(main(f))


def test_cursor_from_previous_process():
    with Ferry("--echo", "--client-publish", *FAST_DRAIN) as f:
        old = [publish(f, "news", "old %d" % i) for i in range(3)]
    with Ferry("--echo", "--client-publish", *FAST_DRAIN) as f:
        new = [publish(f, "news", "new %d" % i) for i in range(2)]
        assert new[0].split(":")[0] != old[0].split(":")[0], \
            "a restarted ferryd reused the epoch: %r %r" % (old, new)

        async def main():
            async with connect(f, "/ferry/ws?ch=news," + old[-1]) as ws:
                await expect_open(ws)
                await expect(ws, "subscribed", channel="news")
                await expect(ws, "reset", channel="news", reason="epoch", cursor=new[-1])
                for i, mid in enumerate(new):
                    await expect(ws, "message", channel="news", id=mid, data="new %d" % i)
                await expect_quiet(ws, 1)
        arun(main())


if __name__ == "__main__":
    run([test_url_subscribe_http_publish, test_handshake_refusals, test_json_protocol,
         test_json_errors_carry_ref,
         test_library_ping_and_echo, test_resume_from_cursor, test_cursor_too_old,
         test_cursor_from_previous_process])
