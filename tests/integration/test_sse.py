#!/usr/bin/python3
"""test_sse.py -- Server-Sent Events end to end, over raw sockets.

What a browser's EventSource (or an XHR streaming reader) sees: the response
headers, the ferry control events, the id lines that carry every channel's
cursor, resuming with Last-Event-ID, resets, heartbeats, padding and
recycling, the drain, errors, CORS and the slow-consumer cut.
"""
import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Ferry, Publisher, SSEStream, http_request, metric, run  # noqa: E402

WAIT = 5.0


# ---------------------------------------------------------------- helpers

def get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


class SSE(SSEStream):
    """harness.SSEStream, with what open_stream() reads ahead of the test:
    message blocks (pending) and reset events (resets)."""

    def __init__(self, *a, **kw):
        self.pending = []
        self.resets = []
        super().__init__(*a, **kw)


def open_stream(port, query, headers=None, channels=None, **kw):
    """Connect, check the status, the retry: block, the open event and one
    subscribed event per channel. Returns (sse, open_json, {channel: subscribed})."""
    s = SSE(port, "/ferry/sse?" + query, headers=headers, **kw)
    assert s.status == 200, (s.status, s.head, s.buf)
    first = s.next_block()
    if "pad=1" in query.split("&"):
        assert len(first.comments) == 1 and len(first.comments[0]) >= 2046, first
        assert first.lines[1:] == [("retry", "2000")], first
    else:
        assert first.lines == [("retry", "2000")], first
    opened = s.next_block().control()
    assert opened and opened["type"] == "open", opened
    subs = {}
    channels = channels or [kv.split("=", 1)[1].split(",")[0] for kv in query.split("&")
                            if kv.startswith("ch=")]
    # per channel: subscribed, [reset], replay; a channel's replay may come
    # before the next channel's subscribed: keep those messages for later
    while len(subs) < len(channels):
        b = s.next_block()
        assert b is not None, "stream ended before every subscribed event"
        c = b.control()
        if c is None:
            assert b.data is not None and b.id, b
            s.pending.append(b)
            continue
        if c["type"] == "reset":
            s.resets.append(c)
            continue
        assert c["type"] == "subscribed", b
        subs[c["channel"]] = c
    assert sorted(subs) == sorted(channels), subs
    return s, opened, subs


def read_messages(s, n, timeout=WAIT, skip_heartbeats=True):
    """The next n message blocks; any other event fails the test."""
    out = []
    while s.pending and len(out) < n:
        out.append(s.pending.pop(0))
    deadline = time.monotonic() + timeout
    while len(out) < n:
        b = s.next_block(timeout=max(0.01, deadline - time.monotonic()))
        assert b is not None, "stream ended after %d of %d messages" % (len(out), n)
        c = b.control()
        if c is not None:
            if skip_heartbeats and c == {"type": "heartbeat"}:
                continue
            raise AssertionError("unexpected control event %r after %d messages" % (c, len(out)))
        out.append(b)
    return out


def id_map(idline):
    """'news,a:1 chat,b:2' -> {'news': 'a:1', 'chat': 'b:2'}"""
    out = {}
    for entry in idline.split(" "):
        ch, _, cur = entry.partition(",")
        assert ch and cur and ch not in out, idline
        out[ch] = cur
    return out


# ---------------------------------------------------------------- tests

def test_headers():
    with Ferry() as f:
        with SSE(f.port, "/ferry/sse?ch=news") as s:
            assert s.status_line == "HTTP/1.1 200 OK", s.status_line
            h = s.headers
            assert h["content-type"].split(";")[0].strip() == "text/event-stream", h
            assert h["cache-control"] == "no-store, no-cache, no-transform", h
            assert h["x-accel-buffering"] == "no", h
            assert h["connection"].lower() == "close", h
            # a stream has no length and is not chunked: it ends with the connection
            assert "content-length" not in h, h
            assert "transfer-encoding" not in h, h
            assert "ferry-reset" not in h, h
            assert "access-control-allow-origin" not in h, h
            # every header appears once
            names = [k for k, _ in s.header_list]
            assert len(names) == len(set(names)), s.header_list


def test_open_then_subscribed():
    with Ferry("--heartbeat", "7s") as f:
        p = Publisher(f.port)
        chat_id = p.publish("chat", "before")
        s = SSE(f.port, "/ferry/sse?ch=news&ch=chat")
        with p, s:
            assert s.status == 200
            assert s.next_block().lines == [("retry", "2000")]
            b = s.next_block()
            assert b.event == "ferry" and b.id is None, b
            opened = b.control()
            assert opened["type"] == "open", opened
            assert re.match(r"^[0-9a-f]+$", opened["session"]), opened
            assert opened["version"] == 1, opened
            assert opened["heartbeat"] == 7, opened
            subs = {}
            for _ in range(2):
                c = s.next_block().control()
                assert c["type"] == "subscribed", c
                subs[c["channel"]] = c["cursor"]
            # fresh subscriptions start at the newest message (no replay)
            assert subs["chat"] == chat_id, subs
            assert re.match(r"^[0-9a-f]{8}:0$", subs["news"]), subs
            mid = p.publish("news", "after")
            (m,) = read_messages(s, 1)
            assert m.data == "after" and id_map(m.id)["news"] == mid, m


def test_message_format():
    with Ferry() as f:
        p = Publisher(f.port)
        s, _, subs = open_stream(f.port, "ch=news")
        with p, s:
            m1 = p.publish("news", "plain")
            m2 = p.publish("news", "line one\nline two\r\nline three\rend", event="update")
            m3 = p.publish("news", "")
            m4 = p.publish("news", "trailing\n")
            m5 = p.publish("news", "h\u00e9llo \u20ac \U0001F600")
            blocks = read_messages(s, 5)
            exact = [
                "id: news,%s\ndata: plain\n\n" % m1,
                "id: news,%s\nevent: update\ndata: line one\ndata: line two\ndata: line three\n"
                "data: end\n\n" % m2,
                "id: news,%s\ndata: \n\n" % m3,
                "id: news,%s\ndata: trailing\ndata: \n\n" % m4,
                "id: news,%s\ndata: h\u00e9llo \u20ac \U0001F600\n\n" % m5,
            ]
            for b, want in zip(blocks, exact):
                assert b.raw.decode() == want, (b.raw, want)
            # what a reader gets: line breaks as LF
            assert blocks[1].data == "line one\nline two\nline three\nend"
            assert blocks[1].event == "update"
            assert blocks[3].data == "trailing\n"


def test_heartbeat():
    with Ferry("--heartbeat", "1s") as f:
        s, opened, _ = open_stream(f.port, "ch=news")
        with s:
            assert opened["heartbeat"] == 1, opened
            t0 = time.monotonic()
            beats = []
            while len(beats) < 2:
                b = s.next_block(timeout=4)
                assert b is not None, "stream ended"
                assert b.event == "ferry", b  # an event, not a comment
                assert b.control() == {"type": "heartbeat"}, b
                assert b.id is None, b
                beats.append(time.monotonic() - t0)
            # they repeat with the period, not in a burst
            assert beats[1] - beats[0] >= 0.5, beats


def test_padding():
    with Ferry() as f:
        p = Publisher(f.port)
        s = SSE(f.port, "/ferry/sse?ch=news&pad=1")
        with p, s:
            assert s.status == 200
            # the first thing in the body is one comment line of >= 2048 bytes
            deadline = time.monotonic() + WAIT
            while b"\n" not in s.buf:
                s.fill(deadline)
            first_line = s.buf.split(b"\n", 1)[0]
            assert first_line.startswith(b":"), s.buf[:100]
            assert len(first_line) + 1 >= 2048, len(first_line)
            assert first_line[1:].strip(b" ") == b"", first_line[:100]
            b = s.next_block()
            assert len(b.comments) == 1 and b.lines[-1] == ("retry", "2000"), b
            assert s.next_block().control()["type"] == "open"
            assert s.next_block().control()["type"] == "subscribed"
            mid = p.publish("news", "after padding")
            (m,) = read_messages(s, 1)
            assert m.data == "after padding" and m.id == "news," + mid, m
        # without pad there is no padding comment
        with SSE(f.port, "/ferry/sse?ch=news&pad=0") as s:
            assert s.next_block().lines == [("retry", "2000")]


def test_format_json():
    with Ferry() as f:
        p = Publisher(f.port)
        s, opened, _ = open_stream(f.port, "ch=news&format=json")
        with p, s:
            m1 = p.publish("news", "a\nb")
            m2 = p.publish("news", "x", event="upd")
            b1, b2 = read_messages(s, 2)
            for b in (b1, b2):
                assert b.event is None, b  # no event: line with format=json
                assert len([f_ for f_, _ in b.lines if f_ == "data"]) == 1, b  # JSON is one line
            assert b1.id == "news," + m1, b1
            assert json.loads(b1.data) == {"type": "message", "channel": "news", "id": m1,
                                           "data": "a\nb"}, b1
            assert json.loads(b2.data) == {"type": "message", "channel": "news", "id": m2,
                                           "event": "upd", "data": "x"}, b2


def test_resume_with_last_event_id():
    with Ferry() as f:
        p = Publisher(f.port)
        s, _, _ = open_stream(f.port, "ch=news")
        sent = [p.publish("news", "m%d" % i) for i in range(1, 6)]
        got = read_messages(s, 2)
        assert [b.data for b in got] == ["m1", "m2"], got
        last_id = got[-1].id
        assert last_id == "news," + sent[1], last_id
        s.close()
        sent += [p.publish("news", "m%d" % i) for i in range(6, 9)]
        # the URL names an older cursor; Last-Event-ID (what the browser sends
        # on its own reconnect) wins for the channels it names
        s, _, subs = open_stream(f.port, "ch=news," + sent[0], headers={"Last-Event-ID": last_id})
        with p, s:
            assert "ferry-reset" not in s.headers, s.headers
            got = read_messages(s, 6)
            assert [b.data for b in got] == ["m%d" % i for i in range(3, 9)], [b.data for b in got]
            assert [b.id for b in got] == ["news," + i for i in sent[2:]]
            # exactly those: the next thing is the next live message
            sentinel = p.publish("news", "sentinel")
            (b,) = read_messages(s, 1)
            assert b.data == "sentinel" and b.id == "news," + sentinel, b


def test_resume_with_url_cursor():
    with Ferry() as f:
        p = Publisher(f.port)
        ids = [p.publish("news", "u%d" % i) for i in range(4)]
        s, _, _ = open_stream(f.port, "ch=news," + ids[1])
        with p, s:
            got = read_messages(s, 2)
            assert [b.data for b in got] == ["u2", "u3"], got
            p.publish("news", "live")
            assert read_messages(s, 1)[0].data == "live"


def test_two_channels():
    with Ferry() as f:
        p = Publisher(f.port)
        s, _, subs = open_stream(f.port, "ch=news&ch=chat")
        news0, chat0 = subs["news"]["cursor"], subs["chat"]["cursor"]
        n1 = p.publish("news", "n1")
        c1 = p.publish("chat", "c1")
        n2 = p.publish("news", "n2")
        got = read_messages(s, 3)
        s.close()
        assert [b.data for b in got] == ["n1", "c1", "n2"], got
        # every id line carries the cursor of every channel of the stream
        assert id_map(got[0].id) == {"news": n1, "chat": chat0}, got[0].id
        assert id_map(got[1].id) == {"news": n1, "chat": c1}, got[1].id
        assert id_map(got[2].id) == {"news": n2, "chat": c1}, got[2].id
        assert news0 != n1
        # a reconnect with the last id resumes both channels
        c2 = p.publish("chat", "c2")
        n3 = p.publish("news", "n3")
        s, _, _ = open_stream(f.port, "ch=news&ch=chat", headers={"Last-Event-ID": got[2].id})
        with p, s:
            # each channel replays after its own cursor (channels interleave
            # in any order, each in its own order)
            again = read_messages(s, 2)
            assert sorted(b.data for b in again) == ["c2", "n3"], again
            assert id_map(again[1].id) == {"news": n3, "chat": c2}, again[1].id
            p.publish("chat", "c3")
            assert read_messages(s, 1)[0].data == "c3"


def test_last_event_id_only_for_named_channels():
    """Last-Event-ID overrides the URL cursor of the channels it names; the
    others keep the URL's."""
    with Ferry() as f:
        p = Publisher(f.port)
        a = [p.publish("a", "a%d" % i) for i in range(3)]
        b = [p.publish("b", "b%d" % i) for i in range(3)]
        s, _, _ = open_stream(f.port, "ch=a,%s&ch=b,%s" % (a[0], b[0]),
                              headers={"Last-Event-ID": "a," + a[1]})
        with p, s:
            got = read_messages(s, 3)
            assert sorted(x.data for x in got) == ["a2", "b1", "b2"], got
            assert [x.data for x in got if x.data.startswith("b")] == ["b1", "b2"]


def reset_stream(f, p, query, **kw):
    s = SSE(f.port, "/ferry/sse?" + query, **kw)
    assert s.status == 200, s.head
    assert s.next_block().lines == [("retry", "2000")]
    assert s.next_block().control()["type"] == "open"
    return s


def test_reset_too_old():
    with Ferry("--history-size", "5", "--history-age", "0") as f:
        p = Publisher(f.port)
        ids = [p.publish("news", "h%d" % i) for i in range(1, 11)]
        s = reset_stream(f, p, "ch=news," + ids[1])
        with p, s:
            sub = s.next_block().control()
            assert sub["type"] == "subscribed" and sub["channel"] == "news", sub
            reset = s.next_block().control()
            assert reset["type"] == "reset", reset
            assert reset["channel"] == "news" and reset["reason"] == "too_old", reset
            assert reset["cursor"] == ids[-1], reset
            # then the whole kept history: the last 5, in order
            got = read_messages(s, 5)
            assert [b.data for b in got] == ["h%d" % i for i in range(6, 11)], got
            assert [b.id for b in got] == ["news," + i for i in ids[5:]]
            p.publish("news", "next")
            assert read_messages(s, 1)[0].data == "next"


def test_reset_header_one_channel():
    """Ferry-Reset header when the stream's (only) cursor was too old."""
    with Ferry("--history-size", "5", "--history-age", "0") as f:
        p = Publisher(f.port)
        ids = [p.publish("news", "h%d" % i) for i in range(1, 11)]
        s = SSE(f.port, "/ferry/sse?ch=news," + ids[1])
        with p, s:
            assert s.status == 200, s.head
            assert s.headers.get("ferry-reset") == "news=too_old", s.head.decode()


def test_reset_header_two_channels():
    """Ferry-Reset names every channel whose cursor was unusable, with the
    reason (the spec's example: "news=too_old, chat=epoch")."""
    with Ferry("--history-size", "5", "--history-age", "0") as f:
        p = Publisher(f.port)
        ids = [p.publish("news", "h%d" % i) for i in range(1, 11)]
        chat = p.publish("chat", "c1")
        other_epoch = ("00000000" if not chat.startswith("00000000") else "11111111") + ":1"
        s = SSE(f.port, "/ferry/sse?ch=news,%s&ch=chat,%s" % (ids[0], other_epoch))
        with p, s:
            assert s.status == 200, s.head
            assert s.headers.get("ferry-reset") == "news=too_old, chat=epoch", s.head.decode()


def test_reset_epoch_and_invalid():
    with Ferry() as f:
        p = Publisher(f.port)
        c1 = p.publish("chat", "c1")
        c2 = p.publish("chat", "c2")
        epoch = c1.split(":")[0]
        other = ("0" if epoch[0] != "0" else "1") + epoch[1:]
        for cursor, reason in ((other + ":1", "epoch"), (epoch + ":99", "epoch"),
                               ("garbage", "invalid")):
            s = reset_stream(f, p, "ch=chat," + cursor)
            with s:
                assert s.next_block().control()["type"] == "subscribed"
                reset = s.next_block().control()
                assert reset == {"type": "reset", "channel": "chat", "reason": reason,
                                 "cursor": c2}, (cursor, reset)
                got = read_messages(s, 2)
                assert [b.data for b in got] == ["c1", "c2"], got
        p.close()


def test_recycle_padded_stream():
    with Ferry("--sse-recycle-bytes", "4K") as f:
        p = Publisher(f.port)
        payload = "x" * 1000
        s, _, _ = open_stream(f.port, "ch=news&pad=1")
        ids = [p.publish("news", "%02d%s" % (i, payload)) for i in range(12)]
        with s:
            blocks = s.expect_eof(timeout=WAIT)
            assert blocks, "nothing before the end"
            assert blocks[-1].control() == {"type": "recycle"}, blocks[-1]
            msgs = blocks[:-1]
            assert all(b.control() is None for b in msgs), msgs
            n = len(msgs)
            # about 4K of messages, then the end: a few, not all
            assert 3 <= n < 12, n
            assert [b.data[:2] for b in msgs] == ["%02d" % i for i in range(n)], msgs
        # the reader reconnects from its last id and gets the rest
        s, _, _ = open_stream(f.port, "ch=news&pad=1", headers={"Last-Event-ID": msgs[-1].id})
        try:
            got = []
            deadline = time.monotonic() + WAIT
            while len(got) < 12 - n:
                b = s.next_block(timeout=max(0.01, deadline - time.monotonic()))
                assert b is not None, "ended after %d" % len(got)
                if b.control() is None:
                    got.append(b)
                else:
                    assert b.control() == {"type": "recycle"}, b
                    s.close()
                    s, _, _ = open_stream(f.port, "ch=news&pad=1",
                                          headers={"Last-Event-ID": got[-1].id})
            assert [b.id for b in got] == ["news," + i for i in ids[n:]], got
        finally:
            s.close()
        # an unpadded stream (a real EventSource) is never recycled
        s, _, _ = open_stream(f.port, "ch=news")
        with p, s:
            for i in range(12):
                p.publish("news", payload)
            got = read_messages(s, 12)
            last = p.publish("news", "still open")
            assert read_messages(s, 1)[0].id == "news," + last


def test_drain():
    with Ferry("--drain-window", "1s", "--drain-timeout", "5s") as f:
        s, _, _ = open_stream(f.port, "ch=news")
        # a request still being sent when SIGTERM arrives
        late = socket.create_connection(("127.0.0.1", f.port), timeout=WAIT)
        late.sendall(b"GET /ferry/sse?ch=news HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.2)
        t0 = time.monotonic()
        f.signal(signal.SIGTERM)
        try:
            time.sleep(0.2)
            late.sendall(b"\r\n")
            resp = b""
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                chunk = late.recv(65536)
                if not chunk:
                    break
                resp += chunk
            assert resp.startswith(b"HTTP/1.1 503"), resp
            assert re.search(rb"\r\nRetry-After: \d+\r\n", resp), resp
            # the stream: retry: <ms>, then the reconnect event, then the end
            b = s.next_block(timeout=3)
            assert b is not None and b.lines[0][0] == "retry", b
            assert [x for x, _ in b.lines] == ["retry"], b
            retry = int(b.retry)
            assert 0 <= retry < 5000, retry  # --reconnect-delay 5s by default
            c = s.next_block(timeout=3).control()
            assert c == {"type": "reconnect", "retry": retry}, c
            assert s.expect_eof(timeout=3) == []
            assert time.monotonic() - t0 < 3, "drained late"
        finally:
            s.close()
            late.close()
        assert f.wait(10) == 0


def test_errors():
    with Ferry() as f:
        def status(raw):
            resp = http_request(f.port, raw)
            return int(resp.split(b" ", 2)[1]) if resp else None, resp

        host = "Host: 127.0.0.1:%d\r\nConnection: close\r\n" % f.port
        for query in ("", "?", "?ch=", "?ch=bad%20name", "?ch=bad!", "?ch=a&ch=a",
                      "?ch=a&ch=a,ffffffff:1", "?ch=a,", "?ch=a,x%20y", "?pad=1",
                      "?ch=" + "c" * 129):
            code, resp = status(("GET /ferry/sse%s HTTP/1.1\r\n%s\r\n" % (query, host)).encode())
            assert code == 400, (query, resp)
        for method in ("POST", "PUT", "DELETE"):
            code, resp = status(("%s /ferry/sse?ch=a HTTP/1.1\r\n%sContent-Length: 0\r\n\r\n"
                                 % (method, host)).encode())
            assert code == 405, (method, resp)
            assert b"\r\nAllow: GET\r\n" in resp, resp
        code, resp = status(("GET /ferry/sse?ch=a HTTP/1.1\r\n%sOrigin: http://evil.test\r\n\r\n"
                             % host).encode())
        assert code == 403, resp
        # too many channels (--max-subscriptions 64 by default)
        many = "&".join("ch=c%d" % i for i in range(65))
        code, resp = status(("GET /ferry/sse?%s HTTP/1.1\r\n%s\r\n" % (many, host)).encode())
        assert code == 400, resp


def test_overlong_channel():
    """A ch= too long to be valid is refused wherever it is in the query,
    not silently dropped from the stream."""
    with Ferry() as f:
        for query in ("ch=a&ch=" + "c" * 300, "ch=" + "c" * 300 + "&ch=a"):
            resp = http_request(f.port, ("GET /ferry/sse?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                         "Connection: close\r\n\r\n" % query).encode(), timeout=1)
            assert resp.startswith(b"HTTP/1.1 400 "), (query[:40] + "...", resp[:200])


def test_transport_switched_off():
    with Ferry("--transports", "websocket,poll") as f:
        status, body = get(f.port, "/ferry/sse?ch=news")
        assert status == 404, (status, body)
        status, body = get(f.port, "/ferry/negotiate")
        assert status == 200 and "sse" not in json.loads(body)["transports"], body
        status, body = get(f.port, "/ferry/poll?ch=news")  # the others still work
        assert status == 200, (status, body)


def test_cors():
    with Ferry("--allow-origin", "http://app.test") as f:
        s, _, _ = open_stream(f.port, "ch=news", headers={"Origin": "http://app.test"})
        with s:
            assert s.headers.get("access-control-allow-origin") == "http://app.test", s.headers
        with SSE(f.port, "/ferry/sse?ch=news", headers={"Origin": "http://other.test"}) as s:
            assert s.status == 403, s.head
        # the page's own host needs no listing, and gets no CORS header
        s, _, _ = open_stream(f.port, "ch=news", headers={"Origin": "http://127.0.0.1:%d" % f.port})
        with s:
            assert "access-control-allow-origin" not in s.headers, s.headers
    with Ferry() as f:
        # same host: allowed, and no CORS header is needed or sent
        s, _, _ = open_stream(f.port, "ch=news", headers={"Origin": "http://127.0.0.1:%d" % f.port})
        with s:
            assert "access-control-allow-origin" not in s.headers, s.headers
    with Ferry("--allow-origin", "*") as f:
        s, _, _ = open_stream(f.port, "ch=news", headers={"Origin": "http://127.0.0.1:%d" % f.port})
        with s:
            assert "access-control-allow-origin" not in s.headers, s.headers
        s, _, _ = open_stream(f.port, "ch=news", headers={"Origin": "https://x.test"})
        with s:
            assert s.headers.get("access-control-allow-origin") == "https://x.test", s.headers


def test_slow_reader_is_cut():
    """A reader that never reads is cut once --out-queue-max is queued for
    it; a normal reader of the same channel gets every message in order.
    2000 x 1 KB normally suffice; kernel socket buffers on loopback can
    absorb a lot, so more are published (bounded) until the cut is seen."""
    payload = "y" * 1000
    with Ferry("--out-queue-max", "64K") as f:
        slow = SSE(f.port, "/ferry/sse?ch=news", rcvbuf=4096, read_head=False)
        normal, _, _ = open_stream(f.port, "ch=news")
        # the slow one is subscribed; it reads nothing from here on
        deadline = time.monotonic() + WAIT
        while metric(f.port, 'ferry_connections{transport="sse"}') < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        result = {"blocks": []}

        def read_all():
            try:
                while True:
                    (b,) = read_messages(normal, 1, timeout=30)
                    if b.data == "END":
                        return
                    result["blocks"].append(b)
            except Exception as e:  # noqa: BLE001 -- reported below
                result["error"] = e

        reader = threading.Thread(target=read_all)
        reader.start()
        p = Publisher(f.port)
        ids = [p.publish("news", "%05d%s" % (i, payload)) for i in range(2000)]
        while metric(f.port, "ferry_drops_total") < 1 and len(ids) < 10000:
            ids += [p.publish("news", "%05d%s" % (i, payload)) for i in range(len(ids), len(ids) + 500)]
        p.publish("news", "END")
        reader.join(70)
        assert not reader.is_alive(), "normal reader did not finish"
        assert "error" not in result, result.get("error")
        got = result["blocks"]
        n = len(ids)
        assert [b.id for b in got] == ["news," + i for i in ids], \
            "normal reader lost or reordered (%d of %d)" % (len(got), n)
        assert all(b.data == "%05d%s" % (i, payload) for i, b in enumerate(got))
        assert metric(f.port, "ferry_drops_total") == 1, "not exactly the slow reader was cut"
        # the slow stream was ended: reading it now reaches EOF early, with an
        # in-order prefix of the messages
        slow.read_head()
        assert slow.status == 200
        blocks = slow.expect_eof(timeout=20)
        msgs = [b for b in blocks if b.data is not None and b.control() is None]
        k = len(msgs)
        assert k < n, "the slow reader was not cut"
        assert [b.id for b in msgs] == ["news," + i for i in ids[:k]]
        slow.close()
        deadline = time.monotonic() + WAIT
        while metric(f.port, 'ferry_connections{transport="sse"}') != 1:
            assert time.monotonic() < deadline, "cut stream still counted"
            time.sleep(0.05)
        print("     slow reader cut after %d of %d messages" % (k, n))
        normal.close()
        p.close()


def test_resume_backlog_over_queue_cap():
    """A reader that resumes (e.g. after being cut as a slow consumer) with
    more missed bytes than --out-queue-max must still get them: the replay
    is what it asked for, not a sign that it is slow. Otherwise it is cut on
    every reconnect and can never catch up."""
    n = 150
    payload = "r" * 1000
    with Ferry("--out-queue-max", "64K", "--history-size", "200") as f:
        p = Publisher(f.port)
        first = p.publish("news", "start")
        ids = [p.publish("news", "%04d%s" % (i, payload)) for i in range(n)]
        s = SSE(f.port, "/ferry/sse?ch=news", headers={"Last-Event-ID": "news," + first})
        with p, s:
            assert s.status == 200, (s.status, s.head)
            got = []
            deadline = time.monotonic() + 20
            while len(got) < n:
                b = s.next_block(timeout=max(0.01, deadline - time.monotonic()))
                assert b is not None, "stream ended after %d of %d replayed messages" % (len(got), n)
                if b.data is not None and b.control() is None:
                    got.append(b)
            assert [b.id for b in got] == ["news," + i for i in ids]


if __name__ == "__main__":
    run([
        test_headers,
        test_open_then_subscribed,
        test_message_format,
        test_heartbeat,
        test_padding,
        test_format_json,
        test_resume_with_last_event_id,
        test_resume_with_url_cursor,
        test_two_channels,
        test_last_event_id_only_for_named_channels,
        test_reset_too_old,
        test_reset_header_one_channel,
        test_reset_header_two_channels,
        test_reset_epoch_and_invalid,
        test_recycle_padded_stream,
        test_drain,
        test_errors,
        test_overlong_channel,
        test_transport_switched_off,
        test_cors,
        test_slow_reader_is_cut,
        test_resume_backlog_over_queue_cap,
    ])
