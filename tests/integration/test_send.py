#!/usr/bin/python3
"""test_send.py -- POST /ferry/send: numbered, batched publishes from SSE
and long-poll clients.

Publishing needs --client-publish; each batch is acknowledged with the
highest seq published for the client, so a retried batch publishes nothing
twice; invalid batches are refused whole (400); the Origin is checked; a
success is always 200 with a JSON body, never 204. Subscribers (long-poll
following cursors, and a WebSocket) check what was actually published.
"""
import asyncio
import http.client
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import client_id, Ferry, ID_RE, run  # noqa: E402

import websockets  # noqa: E402  (Debian python3-websockets 10.4)

WAIT = 5.0


# ---------------------------------------------------------------- helpers

def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, raw
    finally:
        conn.close()


def send(port, batch, headers=None):
    """POST a batch as a browser would (text/plain); (status, json, headers)."""
    if isinstance(batch, dict) and "client" in batch:
        batch = dict(batch, client=client_id(port, batch["client"]))
    body = batch if isinstance(batch, (bytes, str)) else json.dumps(batch)
    if isinstance(body, str):
        body = body.encode()
    h = {"Content-Type": "text/plain;charset=UTF-8"}
    h.update(headers or {})
    status, hdrs, raw = request(port, "POST", "/ferry/send", body, h)
    assert status != 204, "204 from /ferry/send"
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return status, parsed, hdrs, raw


def send_ok(port, batch, ack, headers=None):
    status, body, hdrs, raw = send(port, batch, headers)
    assert status == 200, (status, raw)
    assert body == {"ack": ack}, raw
    assert hdrs["content-type"].startswith("application/json"), hdrs
    assert int(hdrs["content-length"]) == len(raw) > 0, hdrs
    return hdrs


def op(seq, channel, data, event=None):
    o = {"seq": seq, "type": "publish", "channel": channel, "data": data}
    if event is not None:
        o["event"] = event
    return o


def publish_api(port, channel, data):
    status, _, raw = request(port, "POST", "/ferry/publish/" + channel, data.encode())
    assert status == 200, (status, raw)
    return json.loads(raw)["id"]


class Follower:
    """A long-poll subscriber that follows its cursors."""

    def __init__(self, port, channels):
        self.port = port
        status, _, raw = request(port, "GET", "/ferry/poll?" + "&".join("ch=" + c for c in channels))
        assert status == 200, raw
        self.cursors = json.loads(raw)["cursors"]

    def take(self):
        """Everything published since the last take (answers at once when
        there is something; a sentinel makes sure there is)."""
        q = "&".join("ch=%s,%s" % kv for kv in self.cursors.items())
        status, _, raw = request(self.port, "GET", "/ferry/poll?" + q)
        assert status == 200, raw
        body = json.loads(raw)
        assert body["resets"] == [] and body["more"] is False, body
        self.cursors = body["cursors"]
        return body["messages"]

    def take_until_sentinel(self, channel=None):
        """Everything before a sentinel published now to each channel."""
        sentinels = {ch: publish_api(self.port, ch, "sentinel") for ch in self.cursors}
        msgs = self.take()
        for ch, sid in sentinels.items():
            mine = [m for m in msgs if m["channel"] == ch]
            assert mine and mine[-1]["id"] == sid, msgs
        return [m for m in msgs if m["id"] != sentinels[m["channel"]]]


# ---------------------------------------------------------------- tests

def test_needs_client_publish():
    with Ferry() as f:
        sub = Follower(f.port, ["chat"])
        status, body, hdrs, raw = send(f.port, {"client": "c1", "ops": [op(1, "chat", "hi")]})
        assert status == 403, (status, raw)
        assert body["error"] == "forbidden", raw
        assert sub.take_until_sentinel("chat") == []
        status, _, raw = request(f.port, "GET", "/ferry/negotiate")
        assert json.loads(raw)["client_publish"] is False, raw


def test_batch_ack_and_retry():
    with Ferry("--client-publish") as f:
        status, _, raw = request(f.port, "GET", "/ferry/negotiate")
        assert json.loads(raw)["client_publish"] is True, raw
        sub = Follower(f.port, ["chat"])
        batch = {"client": "tab-7", "ops": [op(1, "chat", "one"), op(2, "chat", "two", "ev"),
                                            op(3, "chat", "three\nlines")]}
        send_ok(f.port, batch, 3)
        msgs = sub.take_until_sentinel("chat")
        assert [(m["data"], m.get("event")) for m in msgs] == [
            ("one", None), ("two", "ev"), ("three\nlines", None)], msgs
        assert all(ID_RE.match(m["id"]) for m in msgs)
        # the same batch again (the answer was lost): nothing is published twice
        send_ok(f.port, batch, 3)
        assert sub.take_until_sentinel("chat") == []
        # overlapping: 2 and 3 were done, 4 and 5 are new
        batch2 = {"client": "tab-7", "ops": [op(2, "chat", "two"), op(3, "chat", "three\nlines"),
                                             op(4, "chat", "four"), op(5, "chat", "five")]}
        send_ok(f.port, batch2, 5)
        assert [m["data"] for m in sub.take_until_sentinel("chat")] == ["four", "five"]
        # a batch of nothing but old seqs: acknowledged, nothing published
        send_ok(f.port, {"client": "tab-7", "ops": [op(1, "chat", "x")]}, 5)
        # an empty batch is answered 200 with the ack, not 204
        send_ok(f.port, {"client": "tab-7", "ops": []}, 5)
        assert sub.take_until_sentinel("chat") == []
        # gaps are fine: seq need only increase
        send_ok(f.port, {"client": "tab-7", "ops": [op(10, "chat", "ten"), op(20, "chat", "twenty")]}, 20)
        assert [m["data"] for m in sub.take_until_sentinel("chat")] == ["ten", "twenty"]
        # seqs are per client
        send_ok(f.port, {"client": "tab-8", "ops": [op(1, "chat", "other client")]}, 1)
        assert [m["data"] for m in sub.take_until_sentinel("chat")] == ["other client"]
        # an empty batch of a client never seen before acknowledges 0
        send_ok(f.port, {"client": "fresh", "ops": []}, 0)


def test_websocket_subscriber_sees_sends():
    with Ferry("--client-publish") as f:
        async def main():
            async with websockets.connect(f.ws_url + "/ferry/ws?ch=room&ch=other") as ws:
                seen = []
                while len(seen) < 2:
                    m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                    if m["type"] == "subscribed":
                        seen.append(m["channel"])
                loop = asyncio.get_running_loop()
                batch = {"client": "sse-client_1", "ops": [op(1, "room", "a"), op(2, "other", "b"),
                                                          op(3, "room", "c", "note")]}
                status, body, _, raw = await loop.run_in_executor(None, send, f.port, batch)
                assert status == 200 and body == {"ack": 3}, raw
                got = []
                while len(got) < 3:
                    m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                    assert m["type"] == "message", m
                    got.append((m["channel"], m["data"], m.get("event")))
                assert [g for g in got if g[0] == "room"] == [("room", "a", None), ("room", "c", "note")]
                assert ("other", "b", None) in got
                # a retry: nothing more arrives before the next live message
                status, body, _, raw = await loop.run_in_executor(None, send, f.port, batch)
                assert status == 200 and body == {"ack": 3}, raw
                mid = await loop.run_in_executor(None, publish_api, f.port, "room", "after")
                m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                assert m["type"] == "message" and m["id"] == mid, m
        asyncio.run(asyncio.wait_for(main(), 30))


def test_refused_batches():
    with Ferry("--client-publish", "--history-size", "200") as f:
        sub = Follower(f.port, ["chat"])
        send_ok(f.port, {"client": "c1", "ops": [op(1, "chat", "first")]}, 1)
        assert [m["data"] for m in sub.take_until_sentinel()] == ["first"]
        bad = [
            b"not json",
            b"{\"client\":\"c1\",\"ops\":[",
            b"[1,2,3]",
            b"",
            {"ops": [op(2, "chat", "x")]},                               # no client
            {"client": "", "ops": [op(2, "chat", "x")]},
            {"client": "bad id!", "ops": [op(2, "chat", "x")]},
            {"client": "x" * 65, "ops": [op(2, "chat", "x")]},
            {"client": 42, "ops": [op(2, "chat", "x")]},
            {"client": "c1"},                                            # no ops
            {"client": "c1", "ops": {"seq": 2}},
            {"client": "c1", "ops": [op(2, "chat", "x"), op(2, "chat", "y")]},   # repeated seq
            {"client": "c1", "ops": [op(3, "chat", "x"), op(2, "chat", "y")]},   # decreasing
            {"client": "c1", "ops": [op(0, "chat", "x")]},               # not positive
            {"client": "c1", "ops": [op(-1, "chat", "x")]},
            {"client": "c1", "ops": [dict(op(2, "chat", "x"), seq="2")]},
            {"client": "c1", "ops": [dict(op(2, "chat", "x"), seq=2.5)]},
            {"client": "c1", "ops": [dict(op(2, "chat", "x"), type="subscribe")]},
            {"client": "c1", "ops": [{"seq": 2, "channel": "chat", "data": "x"}]},  # no type
            {"client": "c1", "ops": [op(2, "bad channel", "x")]},
            {"client": "c1", "ops": [op(2, "c" * 129, "x")]},
            {"client": "c1", "ops": [dict(op(2, "chat", "x"), data=5)]},
            {"client": "c1", "ops": [{"seq": 2, "type": "publish", "channel": "chat"}]},  # no data
            {"client": "c1", "ops": [op(2, "chat", "x", "ferry")]},      # reserved event names
            {"client": "c1", "ops": [op(2, "chat", "x", "ferry.open")]},
            {"client": "c1", "ops": [op(2, "chat", "x", "bad event")]},
            {"client": "c1", "ops": [op(2, "chat", "x", "e" * 65)]},
            {"client": "c1", "ops": [op(i, "chat", "x") for i in range(2, 103)]},   # 101 ops
            # one bad op spoils the batch: nothing of it is published
            {"client": "c1", "ops": [op(2, "chat", "valid"), op(3, "chat", "x", "ferry")]},
            b"{\"client\":\"c1\",\"client\":\"c1\",\"ops\":[]}",         # duplicate key
            b"{\"client\":\"c1\",\"ops\":[{\"seq\":2,\"type\":\"publish\",\"channel\":\"chat\","
            b"\"data\":\"\xff\xfe\"}]}",                                  # not UTF-8
        ]
        for batch in bad:
            status, body, hdrs, raw = send(f.port, batch)
            assert status == 400, (batch, status, raw)
            assert body and body["error"] == "bad_request" and body["message"], raw
            assert hdrs["content-type"].startswith("application/json"), hdrs
        assert sub.take_until_sentinel("chat") == [], "a refused batch published something"
        # the client's ack did not move
        send_ok(f.port, {"client": "c1", "ops": [op(1, "chat", "again")]}, 1)
        # exactly 100 ops is fine; a name that only starts like "ferry" too
        send_ok(f.port, {"client": "c1", "ops": [op(i, "chat", "m%d" % i, "ferryboat")
                                                 for i in range(2, 102)]}, 101)
        msgs = sub.take_until_sentinel("chat")
        assert [m["data"] for m in msgs] == ["m%d" % i for i in range(2, 102)], len(msgs)
        assert all(m["event"] == "ferryboat" for m in msgs)


def test_methods():
    with Ferry("--client-publish") as f:
        for method in ("GET", "PUT", "DELETE"):
            status, hdrs, raw = request(f.port, method, "/ferry/send")
            assert status == 405, (method, status, raw)
            assert hdrs.get("allow") == "POST", hdrs


def test_origin():
    batch = {"client": "c1", "ops": [op(1, "chat", "x")]}
    with Ferry("--client-publish") as f:
        sub = Follower(f.port, ["chat"])
        status, _, _, raw = send(f.port, batch, {"Origin": "http://evil.test"})
        assert status == 403, (status, raw)
        assert sub.take_until_sentinel("chat") == []
        # same host: fine, no CORS header
        hdrs = send_ok(f.port, batch, 1, {"Origin": "http://127.0.0.1:%d" % f.port})
        assert "access-control-allow-origin" not in hdrs, hdrs
        assert [m["data"] for m in sub.take_until_sentinel("chat")] == ["x"]
    with Ferry("--client-publish", "--allow-origin", "http://app.test") as f:
        sub = Follower(f.port, ["chat"])
        hdrs = send_ok(f.port, batch, 1, {"Origin": "http://app.test"})
        assert hdrs.get("access-control-allow-origin") == "http://app.test", hdrs
        assert [m["data"] for m in sub.take_until_sentinel("chat")] == ["x"]
        status, _, _, raw = send(f.port, dict(batch, client="c2"), {"Origin": "http://evil.test"})
        assert status == 403, (status, raw)
        assert sub.take_until_sentinel("chat") == []
        # same host: still fine, still no CORS header
        hdrs = send_ok(f.port, dict(batch, client="c3"), 1, {"Origin": "http://127.0.0.1:%d" % f.port})
        assert "access-control-allow-origin" not in hdrs, hdrs
        assert [m["data"] for m in sub.take_until_sentinel("chat")] == ["x"]


def test_publish_failure_acks_what_was_published():
    """The embedded backend refuses a channel over --max-channels. The
    answer acknowledges the ops before the refused one; the client retries
    from there; in the end every op that could be published was published
    exactly once (a retried op is never published twice)."""
    with Ferry("--client-publish", "--max-channels", "2") as f:
        sub = Follower(f.port, ["a", "b"])
        status, body, _, raw = send(f.port, {"client": "c1", "ops": [
            op(1, "a", "a1"), op(2, "b", "b1"), op(3, "c", "c1"), op(4, "a", "a2")]})
        assert status == 503, (status, raw)
        assert body["ack"] == 2 and body["error"] == "publish_failed", raw
        seen = sub.take_until_sentinel()
        # the client retries what was not acknowledged; "c" is still refused
        status, body, _, raw = send(f.port, {"client": "c1", "ops": [op(3, "c", "c1"),
                                                                     op(4, "a", "a2")]})
        assert status == 503 and body["ack"] == 2, (status, raw)
        seen += sub.take_until_sentinel()
        # then gives up on op 3 and retries the rest
        send_ok(f.port, {"client": "c1", "ops": [op(4, "a", "a2")]}, 4)
        seen += sub.take_until_sentinel()
        datas = [m["data"] for m in seen]
        assert sorted(datas) == ["a1", "a2", "b1"], \
            "published (with duplicates?): %r" % datas
        assert [d for d in datas if d.startswith("a")] == ["a1", "a2"]


if __name__ == "__main__":
    run([
        test_needs_client_publish,
        test_batch_ack_and_retry,
        test_websocket_subscriber_sees_sends,
        test_refused_batches,
        test_methods,
        test_origin,
        test_publish_failure_acks_what_was_published,
    ])
