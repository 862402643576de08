#!/usr/bin/python3
"""test_callback.py -- ferryd --callback: asking the app about subscribes and publishes.

A small app of its own (stdlib ThreadingHTTPServer, HTTP/1.1 keep-alive, in
this process on a free 127.0.0.1 port) answers ferry's JSON POSTs:

  POST /cb/sub   decides by the session cookie: alice and bob are allowed
                 (and named: {"identity": NAME}), except on priv-secret;
                 guest is allowed with an empty body; mallory gets 403, no
                 cookie 401, broken 500
  POST /cb/pub   decides by the message: "reply:X" -> {"reply": "re:X"},
                 "pub:X" -> {"publish": "PUB(X)"}, "both:X" -> both, "empty" ->
                 an empty 200, "deny" -> 403, "who" -> a reply naming the
                 identity, client and cookie it was asked with, "n:K" -> both,
                 after a random few milliseconds (answers overtake each other),
                 "sleep:MS" -> both, after MS milliseconds
                 (session=sleepy is allowed to subscribe, after 300 ms)
  POST /cb/slow  answers after SLOW_S seconds, longer than --upstream-timeout

Every POST the app receives is recorded (path, JSON body, Cookie,
X-Forwarded-For). Each case starts its own ferryd
(--upstream APP --callback RULE,RULE,...; no --client-publish: a channel with
a publish rule is the app's to allow) and drives it with python3-websockets,
raw SSE streams, long-polls and POST /ferry/send: allow and deny by cookie on
all three transports, the identity from the subscribe answer in later publish
callbacks, the reply back to the sender only, the app's version of a message
published to every subscriber, an empty answer publishing nothing, refusals,
an unreachable app and a slow one (503 / "unavailable", ferry serving others
meanwhile), clients leaving while the app decides and a drain with callbacks
pending, and 100 publishes in flight answered in order.
"""
import asyncio
import http.client as httpclient
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import client_id, Ferry, free_port, raw_http, run, SSEStream  # noqa: E402
import wsclient  # noqa: E402
from wsclient import OPEN  # noqa: E402

import websockets  # noqa: E402  (Debian python3-websockets 10.4)

SCALE = 5 if os.environ.get("FERRY_TEST_WRAPPER", "").strip() else 1  # slower under valgrind
WAIT = 5.0 * SCALE          # any single answer or frame
SLOW_S = 4.0 * SCALE        # how long /cb/slow takes
TIMEOUT_MS = 1000 * SCALE   # --upstream-timeout of the slow-app case
RULES = ",".join([
    "subscribe:priv-*=/cb/sub",
    "subscribe:slowsub-*=/cb/slow",
    "publish:chat*=/cb/pub",
    "publish:slowpub*=/cb/slow",
])


# ---------------------------------------------------------------- the app

class App:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []   # {"path", "body", "cookie", "xff", "at"}
        self.slow_started = 0
        self.slow_done = 0

    def record(self, path, body, headers):
        with self.lock:
            self.calls.append({"path": path, "body": body, "cookie": headers.get("Cookie"),
                               "xff": headers.get("X-Forwarded-For"),
                               "ctype": headers.get("Content-Type"), "at": time.monotonic()})

    def find(self, path=None, channel=None, client=None):
        with self.lock:
            return [c for c in self.calls
                    if (path is None or c["path"] == path)
                    and (channel is None or c["body"].get("channel") == channel)
                    and (client is None or c["body"].get("client") == client)]


APP = App()


def session_of(cookie_header):
    if not cookie_header:
        return None
    c = SimpleCookie()
    c.load(cookie_header)
    return c["session"].value if "session" in c else None


class AppHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        # answers go out in one write, without waiting for ferry's ACK
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def answer(self, status, obj=None):
        body = b"" if obj is None else json.dumps(obj).encode()
        head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
            status, self.responses.get(status, ("",))[0], len(body))
        self.wfile.write(head.encode() + body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw)
        except ValueError:
            return self.answer(400, {"error": "not JSON: %r" % raw[:100]})
        path = urllib.parse.urlsplit(self.path).path
        APP.record(path, body, self.headers)
        if path == "/cb/sub":
            who = session_of(self.headers.get("Cookie"))
            if who is None:
                return self.answer(401, {"error": "log in"})
            if who == "broken":
                return self.answer(500, {"error": "oops"})
            if who == "guest":
                return self.answer(200)
            if who == "sleepy":
                time.sleep(0.3)
                return self.answer(200, {"identity": who})
            if who in ("alice", "bob") and body.get("channel") != "priv-secret":
                return self.answer(200, {"identity": who})
            return self.answer(403, {"error": "not yours"})
        if path == "/cb/pub":
            data = body.get("data")
            cmd, _, arg = (data or "").partition(":")
            if cmd == "reply":
                return self.answer(200, {"reply": "re:" + arg})
            if cmd == "pub":
                return self.answer(200, {"publish": "PUB(%s)" % arg})
            if cmd == "both":
                return self.answer(200, {"publish": "PUB(%s)" % arg, "reply": "re:" + arg})
            if cmd == "empty":
                return self.answer(200)
            if cmd == "deny":
                return self.answer(403, {"error": "no"})
            if cmd == "who":
                return self.answer(200, {"reply": json.dumps({
                    "identity": body.get("identity"), "client": body.get("client"),
                    "cookie": self.headers.get("Cookie"), "event_name": body.get("event_name")})})
            if cmd == "sleep":
                time.sleep(int(arg) / 1000.0)
                return self.answer(200, {"publish": "PUB(sleep)", "reply": "re:sleep"})
            if cmd == "n":
                time.sleep(random.random() * 0.02)
                return self.answer(200, {"publish": "N" + arg, "reply": "re:" + arg})
            return self.answer(200, {"reply": "re:" + (data or "")})
        if path == "/cb/slow":
            with APP.lock:
                APP.slow_started += 1
            time.sleep(SLOW_S)
            with APP.lock:
                APP.slow_done += 1
            try:
                return self.answer(200, {"reply": "late", "publish": "late"})
            except OSError:
                return None
        return self.answer(404, {"error": "no such hook"})


class AppServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        pass  # ferry hung up on a slow answer: expected


APP_SERVER = AppServer(("127.0.0.1", 0), AppHandler)
threading.Thread(target=APP_SERVER.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
APP_URL = "http://127.0.0.1:%d" % APP_SERVER.server_address[1]


def ferry(*extra, upstream=APP_URL, rules=RULES):
    """A ferryd asking APP; a failed case leaves clients open, hence the short drain."""
    return Ferry("--upstream", upstream, "--callback", rules, "--drain-window", "200ms", *extra)


def uniq(prefix):
    return "%s-%d-%d" % (prefix, os.getpid(), random.randrange(1 << 30))


# ---------------------------------------------------------------- plain HTTP

def http_req(port, method, path, body=None, headers=None, timeout=WAIT):
    """(status, headers (lower-case keys), body bytes)."""
    c = httpclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Content-Type": "text/plain"} if body is not None else {}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def publish_api(f, channel, data):
    st, _, body = http_req(f.port, "POST", "/ferry/publish/" + channel, data.encode())
    assert st == 200, "POST /ferry/publish/%s -> %d %r" % (channel, st, body)
    return json.loads(body)["id"]


def send(f, client, ops, cookie=None):
    """POST /ferry/send: (status, parsed JSON or raw bytes)."""
    h = {"Cookie": cookie} if cookie else {}
    st, _, raw = http_req(f.port, "POST", "/ferry/send",
                      json.dumps({"client": client_id(f.port, client), "ops": ops}).encode(), h)
    try:
        return st, json.loads(raw)
    except ValueError:
        return st, raw


def op(seq, channel, data, event=None):
    o = {"seq": seq, "type": "publish", "channel": channel, "data": data}
    if event:
        o["event"] = event
    return o


def poll(f, query, cookie=None, timeout=WAIT):
    h = {"Cookie": cookie} if cookie else {}
    st, hd, raw = http_req(f.port, "GET", "/ferry/poll?" + query, headers=h, timeout=timeout)
    return st, hd, (json.loads(raw) if st == 200 else raw)


async def ahistory(f, channel, cursor):
    """Messages of channel after cursor: a WebSocket subscribing with the
    cursor gets the replay before the answer to its ping."""
    w = await WS.open(f)
    try:
        await w.send({"type": "subscribe", "channel": channel, "cursor": cursor, "ref": 1})
        frames = await w.barrier()
    finally:
        await w.close()
    assert frames and frames[0]["type"] == "subscribed", frames
    return [m["data"] for m in frames if m["type"] == "message"]


def history(f, channel, cursor):
    return asyncio.run(asyncio.wait_for(ahistory(f, channel, cursor), WAIT * 2))


def cursor_of(f, channel):
    st, _, r = poll(f, "ch=" + channel)
    assert st == 200, (st, r)
    return r["cursors"][channel]


class SSE(SSEStream):
    """harness.SSEStream on /ferry/sse?query, with the session cookie; status
    and headers first, then events (SSEBlocks: .event, .data)."""

    def __init__(self, f, query, cookie=None):
        super().__init__(f.port, "/ferry/sse?" + query, {"Cookie": cookie} if cookie else None,
                         timeout=WAIT)

    def event(self, timeout=WAIT):
        return self.next_event(timeout)

    def message(self, timeout=WAIT):
        """The next channel message's data (ferry's own events skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self.event(max(0.01, deadline - time.monotonic()))
            if ev.event != "ferry":
                return ev.data


# ---------------------------------------------------------------- WebSocket

class WS:
    """A ferry WebSocket client with bounded reads."""

    @classmethod
    async def open(cls, f, query="", cookie=None):
        self = cls()
        self.stash = []
        h = {"Cookie": cookie} if cookie else {}
        self.ws = await websockets.connect(f.ws_url + "/ferry/ws" + query, extra_headers=h,
                                           ping_interval=None, open_timeout=WAIT, max_size=None)
        OPEN.append(self.ws.transport.abort)
        hello = await self.recv()
        assert hello["type"] == "open", hello
        self.session = hello["session"]
        return self

    async def _read(self, timeout):
        try:
            return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        except asyncio.TimeoutError:
            raise AssertionError("no frame within %.1fs" % timeout)

    async def recv(self, timeout=WAIT):
        """The next frame (first those ask() stepped over)."""
        if self.stash:
            return self.stash.pop(0)
        return await self._read(timeout)

    async def send(self, obj):
        await self.ws.send(json.dumps(obj))

    async def ask(self, obj, timeout=WAIT):
        """Send, then the first frame carrying the same ref; the frames before
        it stay for recv()."""
        await self.send(obj)
        for i, m in enumerate(self.stash):
            if m.get("ref") == obj.get("ref") and m["type"] != "message":
                return self.stash.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            m = await self._read(max(0.01, deadline - time.monotonic()))
            if m.get("ref") == obj.get("ref") and m["type"] != "message":
                return m
            self.stash.append(m)

    async def barrier(self, ref=999999):
        """The frames that came before the answer to a ping."""
        await self.send({"type": "ping", "ref": ref})
        frames = []
        while True:
            m = await self.recv()
            if m["type"] == "pong" and m.get("ref") == ref:
                return frames
            frames.append(m)

    async def subscribe(self, channel, ref=1):
        m = await self.ask({"type": "subscribe", "channel": channel, "ref": ref})
        assert m["type"] == "subscribed" and m["channel"] == channel, m
        return m

    async def publish(self, channel, data, ref, event=None):
        o = {"type": "publish", "channel": channel, "data": data, "ref": ref}
        if event:
            o["event"] = event
        return await self.ask(o)

    async def next_message(self, timeout=WAIT):
        while True:
            m = await self.recv(timeout)
            if m["type"] == "message":
                return m

    async def close(self):
        self.ws.transport.abort()


def arun(coro, timeout=90):
    """Bounded; aborts every WebSocket the case opened (OPEN), even when it
    failed half-way."""
    return wsclient.arun(coro, timeout)


# ---------------------------------------------------------------- cases

def test_subscribe_websocket_by_cookie():
    """WebSocket: the app allows by session cookie; a refusal is an error frame
    and the connection stays usable; the app saw the cookie, the peer and the
    session id."""
    ch = uniq("priv-ws")
    with ferry() as f:
        async def main():
            alice = await WS.open(f, cookie="theme=dark; session=alice")
            await alice.subscribe(ch, ref=7)
            calls = APP.find("/cb/sub", ch, alice.session)
            assert len(calls) == 1, calls
            c = calls[0]
            assert c["body"]["event"] == "subscribe" and c["body"]["identity"] is None, c
            assert c["cookie"] == "theme=dark; session=alice", c
            assert c["xff"] == "127.0.0.1", c
            assert (c["ctype"] or "").startswith("application/json"), c
            assert "data" not in c["body"], c

            for cookie, why in (("session=mallory", "403"), (None, "401 (no cookie)")):
                ev = await WS.open(f, cookie=cookie)
                m = await ev.ask({"type": "subscribe", "channel": ch, "ref": 3})
                assert m["type"] == "error" and m["code"] == "forbidden", (why, m)
                # the connection stays: a channel without a rule still works
                free = uniq("free")
                await ev.subscribe(free, ref=4)
                publish_api(f, free, "still here")
                got = await ev.next_message()
                assert got["data"] == "still here", got
                # and the refused channel never delivers to it
                publish_api(f, ch, "secret")
                frames = await ev.barrier()
                assert not any(x.get("channel") == ch for x in frames), (why, frames)
                await ev.close()

            # the same in the handshake's ?ch=
            ev = await WS.open(f, "?ch=" + ch, cookie="session=mallory")
            m = await ev.recv()
            assert m["type"] == "error" and m["code"] == "forbidden", m
            await ev.close()
            bob = await WS.open(f, "?ch=" + ch, cookie="session=bob")
            m = await bob.recv()
            assert m["type"] == "subscribed" and m["channel"] == ch, m

            # alice (and bob) get what is published
            publish_api(f, ch, "for members")
            for who in (alice, bob):
                msgs = [x for x in await who.barrier() if x["type"] == "message"]
                assert [x["data"] for x in msgs][-1:] == ["for members"], msgs
            # guest: allowed by an empty 2xx
            guest = await WS.open(f, cookie="session=guest")
            await guest.subscribe(ch, ref=1)
            # priv-secret refused even to alice; another ref on the same socket
            m = await alice.ask({"type": "subscribe", "channel": "priv-secret", "ref": 8})
            assert m["type"] == "error" and m["code"] == "forbidden", m
            # a channel without a subscribe rule does not ask the app
            n = len(APP.find("/cb/sub"))
            await alice.subscribe(uniq("free"), ref=9)
            assert len(APP.find("/cb/sub")) == n, "the app was asked about a channel without a rule"
            for w in (alice, bob, guest):
                await w.close()
        arun(main())


def test_subscribe_sse_by_cookie():
    """SSE: allowed streams start and deliver; refused ones are 403 before any
    stream (one refused channel refuses the request)."""
    ch = uniq("priv-sse")
    with ferry() as f:
        ok = SSE(f, "ch=%s&client=%s" % (ch, client_id(f.port, "sse-alice")), cookie="session=alice")
        try:
            assert ok.status == 200, ok.status
            assert ok.headers.get("content-type", "").startswith("text/event-stream"), ok.headers
            calls = APP.find("/cb/sub", ch, client_id(f.port, "sse-alice"))
            assert len(calls) == 1 and calls[0]["cookie"] == "session=alice", calls
            assert calls[0]["xff"] == "127.0.0.1", calls
            # wait for "subscribed" before publishing
            while True:
                ev = ok.event()
                if ev.event == "ferry" and json.loads(ev.data)["type"] == "subscribed":
                    break
            publish_api(f, ch, "sse member news")
            assert ok.message() == "sse member news"
        finally:
            ok.close()
        for cookie, query in (("session=mallory", "ch=" + ch),
                              (None, "ch=" + ch),
                              ("session=alice", "ch=%s&ch=priv-secret" % ch)):
            r = SSE(f, query, cookie=cookie)
            try:
                assert r.status == 403, (cookie, query, r.status, r.buf)
                assert "text/event-stream" not in r.headers.get("content-type", ""), r.headers
                body = r.rest()
                assert b"subscribed" not in body and b"event:" not in body, body
            finally:
                r.close()


def test_subscribe_poll_by_cookie():
    """Long-poll: allowed polls answer (and a held poll delivers); refused ones are 403."""
    ch = uniq("priv-poll")
    with ferry() as f:
        st, _, r = poll(f, "ch=%s&client=%s" % (ch, client_id(f.port, "poll-bob")), cookie="session=bob")
        assert st == 200, (st, r)
        cur = r["cursors"][ch]
        calls = APP.find("/cb/sub", ch, client_id(f.port, "poll-bob"))
        assert len(calls) == 1 and calls[0]["cookie"] == "session=bob", calls

        held = {}

        def hold():
            held["r"] = poll(f, "ch=%s,%s&client=%s" % (ch, cur, client_id(f.port, "poll-bob")), cookie="session=bob")
        t = threading.Thread(target=hold)
        t.start()
        deadline = time.monotonic() + WAIT
        while len(APP.find("/cb/sub", ch, client_id(f.port, "poll-bob"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # the poll is held by now
        publish_api(f, ch, "poll member news")
        t.join(WAIT + 1)
        assert not t.is_alive(), "the held poll did not answer"
        st, _, r = held["r"]
        assert st == 200 and [m["data"] for m in r["messages"]] == ["poll member news"], (st, r)

        for cookie, query in (("session=mallory", "ch=" + ch),
                              (None, "ch=" + ch),
                              ("session=bob", "ch=priv-secret"),
                              ("session=mallory", "ch=%s,%s" % (ch, cur))):
            st, hd, body = poll(f, query, cookie=cookie)
            assert st == 403, (cookie, query, st, body)
            assert b"messages" not in body, body


def test_subscribe_app_error_is_unavailable():
    """callback.h: subscribe '2xx allows, 401/403 refuse, else 503': an app
    answering 500 is not a refusal."""
    ch = uniq("priv-500")
    with ferry() as f:
        async def main():
            w = await WS.open(f, cookie="session=broken")
            m = await w.ask({"type": "subscribe", "channel": ch, "ref": 1})
            assert m["type"] == "error", m
            await w.close()
            return m["code"]
        code = arun(main())
        r = SSE(f, "ch=" + ch, cookie="session=broken")
        sse_status = r.status
        r.close()
        st, _, _ = poll(f, "ch=" + ch, cookie="session=broken")
        got = (code, sse_status, st)
        assert got == ("unavailable", 503, 503), \
            "app answered 500: expected (unavailable, 503, 503), got %r" % (got,)


def test_identity_reaches_publish_callback():
    """The identity the app named in a subscribe answer comes back in later
    publish callbacks of that WebSocket (with its cookie); null before, and
    per connection."""
    ch = uniq("priv-id")
    chat = uniq("chat-id")
    with ferry() as f:
        async def main():
            a = await WS.open(f, cookie="session=alice")
            b = await WS.open(f, cookie="session=bob")
            m = await a.publish(chat, "who", ref=1, event="say")
            assert m["type"] == "ack", m
            seen = json.loads(m["reply"])
            assert seen == {"identity": None, "client": a.session, "cookie": "session=alice",
                            "event_name": "say"}, seen
            await a.subscribe(ch, ref=2)
            await b.subscribe(ch, ref=2)
            for w, name in ((a, "alice"), (b, "bob")):
                m = await w.publish(chat, "who", ref=3)
                assert m["type"] == "ack", m
                seen = json.loads(m["reply"])
                assert seen["identity"] == name and seen["client"] == w.session, (name, seen)
            calls = APP.find("/cb/pub", chat, a.session)
            assert [c["body"]["identity"] for c in calls] == [None, "alice"], calls
            assert all(c["xff"] == "127.0.0.1" and c["body"]["event"] == "publish" for c in calls), calls
            assert calls[0]["body"]["data"] == "who" and calls[0]["body"]["event_name"] == "say", calls
            for w in (a, b):
                await w.close()
        arun(main())


def test_ws_publish_callback():
    """WebSocket publish: a reply goes to the sender only, the app's version is
    published to everyone (the ack carries its id), an empty answer publishes
    nothing, a refusal is "forbidden" and the socket stays."""
    chat = uniq("chat-ws")
    with ferry() as f:
        async def main():
            a = await WS.open(f, cookie="session=alice")
            b = await WS.open(f, cookie="session=bob")
            await a.subscribe(chat, ref=1)
            await b.subscribe(chat, ref=1)
            sse = await asyncio.to_thread(SSE, f, "ch=" + chat)
            start = cursor_of(f, chat)

            m = await a.publish(chat, "reply:hello", ref=10)
            assert m == {"type": "ack", "ref": 10, "channel": chat, "reply": "re:hello"}, m
            m = await a.publish(chat, "empty", ref=11)
            assert m == {"type": "ack", "ref": 11, "channel": chat}, m
            m = await a.publish(chat, "deny", ref=12)
            assert m["type"] == "error" and m["code"] == "forbidden", m
            m = await a.publish(chat, "pub:x", ref=13, event="say")
            assert m["type"] == "ack" and m.get("id") and "reply" not in m, m
            pid = m["id"]
            m = await a.publish(chat, "both:y", ref=14)
            assert m["type"] == "ack" and m.get("id") and m.get("reply") == "re:y", m
            bid = m["id"]

            # every subscriber: exactly the two published versions, nothing else
            for w, name in ((a, "sender"), (b, "other")):
                msgs = [x for x in await w.barrier() if x["type"] != "ack"]
                assert [(x["type"], x.get("data"), x.get("id")) for x in msgs] == \
                    [("message", "PUB(x)", pid), ("message", "PUB(y)", bid)], (name, msgs)
                assert msgs[0].get("event") == "say", msgs
                assert not any("re:" in json.dumps(x) for x in msgs), (name, msgs)
            got = [await asyncio.to_thread(sse.message), await asyncio.to_thread(sse.message)]
            assert got == ["PUB(x)", "PUB(y)"], got
            sse.close()
            assert await ahistory(f, chat, start) == ["PUB(x)", "PUB(y)"]
            # the app saw every message as the client sent it
            datas = [c["body"]["data"] for c in APP.find("/cb/pub", chat, a.session)]
            assert datas == ["reply:hello", "empty", "deny", "pub:x", "both:y"], datas
            # a channel without a publish rule is still closed (no --client-publish)
            m = await a.publish(uniq("free"), "hi", ref=15)
            assert m["type"] == "error" and m["code"] == "forbidden", m
            for w in (a, b):
                await w.close()
        arun(main())


def test_send_publish_callback():
    """POST /ferry/send: replies in "replies" by seq, the app's versions
    published, an empty answer taken, a refusal 403 forbidden; a retried POST
    asks the app nothing again."""
    chat = uniq("chat-send")
    with ferry() as f:
        async def main():
            other = await WS.open(f)
            await other.subscribe(chat, ref=1)
            start = cursor_of(f, chat)
            ops = [op(1, chat, "reply:one"), op(2, chat, "pub:two", event="say"),
                   op(3, chat, "empty"), op(4, chat, "both:four")]
            st, r = await asyncio.to_thread(send, f, "sender-1", ops, "session=alice")
            assert st == 200, (st, r)
            assert r == {"ack": 4, "replies": {"1": "re:one", "4": "re:four"}}, r
            msgs = [x for x in await other.barrier() if x["type"] == "message"]
            assert [(x["data"], x.get("event")) for x in msgs] == [("PUB(two)", "say"), ("PUB(four)", None)], msgs
            assert await ahistory(f, chat, start) == ["PUB(two)", "PUB(four)"]
            calls = APP.find("/cb/pub", chat, client_id(f.port, "sender-1"))
            assert [c["body"]["data"] for c in calls] == ["reply:one", "pub:two", "empty", "both:four"], calls
            assert all(c["cookie"] == "session=alice" and c["xff"] == "127.0.0.1" for c in calls), calls
            assert calls[1]["body"].get("event_name") == "say", calls[1]

            # the same POST again: nothing asked, nothing published
            st, r = await asyncio.to_thread(send, f, "sender-1", ops, "session=alice")
            assert st == 200 and r.get("ack") == 4, (st, r)
            assert len(APP.find("/cb/pub", chat, client_id(f.port, "sender-1"))) == 4, "a retried POST asked the app again"
            assert await ahistory(f, chat, start) == ["PUB(two)", "PUB(four)"]

            # refused
            st, r = await asyncio.to_thread(send, f, "sender-1", [op(5, chat, "deny")])
            assert st == 403 and isinstance(r, dict) and r.get("error") == "forbidden", (st, r)
            # a refusal stops the batch: op 7 is not published
            st, r = await asyncio.to_thread(send, f, "sender-2", [op(1, chat, "pub:a"), op(2, chat, "deny"),
                                                                   op(3, chat, "pub:c")])
            assert st == 403 and r.get("error") == "forbidden" and r.get("ack") == 1, (st, r)
            msgs = [x for x in await other.barrier() if x["type"] == "message"]
            assert [x["data"] for x in msgs] == ["PUB(a)"], msgs
            # no publish rule: still needs --client-publish
            st, r = await asyncio.to_thread(send, f, "sender-3", [op(1, uniq("free"), "x")])
            assert st == 403, (st, r)
            await other.close()
        arun(main())


def test_reply_only_to_sender_sse_poll():
    """A reply over POST send reaches only that POST's answer: an SSE and a
    long-poll subscriber of the channel see only what the app published."""
    chat = uniq("chat-rs")
    with ferry() as f:
        sse = SSE(f, "ch=" + chat)
        try:
            while True:
                ev = sse.event()
                if ev.event == "ferry" and json.loads(ev.data)["type"] == "subscribed":
                    break
            cur = cursor_of(f, chat)
            st, r = send(f, "rs-1", [op(1, chat, "reply:private"), op(2, chat, "pub:public")])
            assert st == 200 and r == {"ack": 2, "replies": {"1": "re:private"}}, (st, r)
            assert sse.message() == "PUB(public)"
            st, _, p = poll(f, "ch=%s,%s&client=%s" % (chat, cur, client_id(f.port, "rs-poll")))
            assert st == 200 and [m["data"] for m in p["messages"]] == ["PUB(public)"], p
        finally:
            sse.close()


def test_app_down_unavailable():
    """The app unreachable: WebSocket "unavailable" (subscribe and publish),
    SSE and long-poll 503, POST send 503; ferry serves everything else."""
    closed = free_port()
    ch, chat = uniq("priv-down"), uniq("chat-down")
    with ferry(upstream="http://127.0.0.1:%d" % closed) as f:
        async def main():
            w = await WS.open(f, cookie="session=alice")
            m = await w.ask({"type": "subscribe", "channel": ch, "ref": 1})
            assert m["type"] == "error" and m["code"] == "unavailable", m
            m = await w.publish(chat, "pub:x", ref=2)
            assert m["type"] == "error" and m["code"] == "unavailable", m
            free = uniq("free")
            await w.subscribe(free, ref=3)
            publish_api(f, free, "still served")
            assert (await w.next_message())["data"] == "still served"
            await w.close()
        arun(main())
        r = SSE(f, "ch=" + ch, cookie="session=alice")
        try:
            assert r.status == 503, (r.status, r.buf)
            assert "text/event-stream" not in r.headers.get("content-type", ""), r.headers
        finally:
            r.close()
        st, _, body = poll(f, "ch=" + ch, cookie="session=alice")
        assert st == 503, (st, body)
        # and says when to come back, as a drain does
        st, hdrs, _ = raw_http(f.port, "GET", "/ferry/poll?ch=" + ch, {"Cookie": "session=alice"})
        assert st == 503 and int(hdrs.get("retry-after", "0")) >= 1, (st, hdrs)
        st, r = send(f, "down-1", [op(1, chat, "pub:x")])
        assert st == 503, (st, r)
        assert history(f, chat, cursor_of(f, chat)) == []
        st, _, _ = http_req(f.port, "GET", "/ferry/healthz")
        assert st == 200, st


def test_app_slow_unavailable():
    """The app slower than --upstream-timeout: "unavailable" / 503 after about
    the timeout; meanwhile ferry serves other clients and fast callbacks; the
    late answers are never read as answers to later callbacks."""
    ch, slowpub, chat = uniq("slowsub"), uniq("slowpub"), uniq("chat-fast")
    with ferry("--upstream-timeout", "%dms" % TIMEOUT_MS) as f:
        async def main():
            t0 = time.monotonic()
            w = await WS.open(f, cookie="session=alice")
            await w.send({"type": "subscribe", "channel": ch, "ref": 1})
            # one publish: a client's messages go to the app one at a time
            # (test_many_concurrent_in_order), so a second would wait behind it
            await w.send({"type": "publish", "channel": slowpub, "data": "s0", "ref": 10})
            sse_box, poll_box, send_box = {}, {}, {}
            threads = [
                threading.Thread(target=lambda: sse_box.update(r=SSE(f, "ch=" + ch, cookie="session=alice"))),
                threading.Thread(target=lambda: poll_box.update(r=poll(f, "ch=" + ch, cookie="session=alice"))),
                threading.Thread(target=lambda: send_box.update(r=send(f, "slow-1", [op(1, slowpub, "x")]))),
            ]
            for t in threads:
                t.start()
            # everyone else is served while those wait on the app
            deadline = time.monotonic() + WAIT
            while APP.slow_started - base_started < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert APP.slow_started - base_started >= 5, "the app did not get the slow callbacks"
            t1 = time.monotonic()
            other = await WS.open(f, cookie="session=bob")
            free = uniq("free")
            await other.subscribe(free, ref=1)
            publish_api(f, free, "meanwhile")
            assert (await other.next_message())["data"] == "meanwhile"
            m = await other.publish(chat, "reply:fast", ref=2)
            assert m.get("reply") == "re:fast", m
            st, _, r = await asyncio.to_thread(poll, f, "ch=" + free)
            assert st == 200, st
            served = time.monotonic() - t1
            assert served < TIMEOUT_MS / 1000.0 * 0.8, \
                "other clients took %.2fs while callbacks were pending" % served

            got = {}
            while len(got) < 2:
                m = await w.recv(TIMEOUT_MS / 1000.0 + WAIT)
                if m.get("ref") is not None:
                    got[m["ref"]] = (m["type"], m.get("code"), time.monotonic() - t0)
            for ref, (typ, code, at) in got.items():
                assert (typ, code) == ("error", "unavailable"), (ref, typ, code)
                assert TIMEOUT_MS / 1000.0 * 0.8 <= at < TIMEOUT_MS / 1000.0 + 1.5, (ref, at)
            for t in threads:
                t.join(WAIT)
                assert not t.is_alive()
            r = sse_box["r"]
            assert r.status == 503, (r.status, r.buf)
            r.close()
            assert poll_box["r"][0] == 503, poll_box["r"]
            assert send_box["r"][0] == 503, send_box["r"]
            assert APP.slow_done - base_done < 5, "the slow answers came back before the timeout"

            # after the app finally answers (into closed connections), fresh
            # callbacks get their own answers, not the late ones
            deadline = time.monotonic() + SLOW_S + WAIT
            while APP.slow_done - base_done < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for i in range(20):
                m = await other.publish(chat, "reply:after%d" % i, ref=100 + i)
                assert m.get("type") == "ack" and m.get("reply") == "re:after%d" % i, m
            st, _, r = await asyncio.to_thread(poll, f, "ch=" + ch, "session=alice")
            assert st == 503, st  # still slow, still refused
            assert await ahistory(f, slowpub, cursor_of(f, slowpub)) == []
            await w.close()
            await other.close()
        with APP.lock:
            base_started, base_done = APP.slow_started, APP.slow_done
        arun(main())


def test_many_concurrent_in_order():
    """100 publishes in flight from each of 3 WebSockets (the app answers them
    in a random order): every one acknowledged, in order per client, with its
    own reply; the published versions reach a subscriber in each client's
    order. Then 100 ops in one POST send."""
    chat = uniq("chat-many")
    N = 100
    with ferry() as f:
        async def main():
            watcher = await WS.open(f)
            await watcher.subscribe(chat, ref=1)
            clients = [await WS.open(f, cookie="session=c%d" % i) for i in range(3)]

            async def blast(w, k):
                for i in range(1, N + 1):
                    await w.send({"type": "publish", "channel": chat, "data": "n:%d.%d" % (k, i), "ref": i})
                out = []
                while len(out) < N:
                    m = await w.recv(WAIT * 2)
                    if m["type"] in ("ack", "error"):
                        out.append(m)
                return out
            results = await asyncio.gather(*(blast(w, k) for k, w in enumerate(clients)))
            for k, acks in enumerate(results):
                bad = [m for m in acks if m["type"] != "ack"]
                assert not bad, (k, bad[:3])
                refs = [m["ref"] for m in acks]
                assert sorted(refs) == list(range(1, N + 1)), (k, refs)
                for m in acks:
                    assert m["reply"] == "re:%d.%d" % (k, m["ref"]), m
                assert refs == list(range(1, N + 1)), \
                    "client %d: acks out of order: %s" % (k, [r for i, r in enumerate(refs) if r != i + 1][:10])
            seen = []
            while len(seen) < 3 * N:
                seen.append((await watcher.next_message(WAIT))["data"])
            for k in range(3):
                mine = [s for s in seen if s.startswith("N%d." % k)]
                assert mine == ["N%d.%d" % (k, i) for i in range(1, N + 1)], \
                    "client %d's messages published out of order: %s" % (k, mine[:12])
            # ack ids follow the channel order
            ids = {}
            for k, acks in enumerate(results):
                for m in acks:
                    ids[m["id"]] = "N%d.%d" % (k, m["ref"])
            assert len(ids) == 3 * N

            ops = [op(i, chat, "n:9.%d" % i) for i in range(1, N + 1)]
            st, r = await asyncio.to_thread(send, f, "many-send", ops)
            assert st == 200 and r["ack"] == N, (st, str(r)[:300])
            assert r["replies"] == {str(i): "re:9.%d" % i for i in range(1, N + 1)}, str(r)[:300]
            got = [(await watcher.next_message(WAIT))["data"] for _ in range(N)]
            assert got == ["N9.%d" % i for i in range(1, N + 1)], got[:10]
            for w in clients + [watcher]:
                await w.close()
        arun(main(), timeout=120)


def test_clients_gone_mid_callback():
    """Clients that leave while the app is deciding (it answers later, or
    not in time), then a drain with callbacks pending: ferry carries on,
    publishes what the app published, and exits cleanly (no sanitizer report)."""
    ch, chat, slowsub, slowpub = uniq("priv-gone"), uniq("chat-gone"), uniq("slowsub"), uniq("slowpub")
    with ferry("--upstream-timeout", "%dms" % TIMEOUT_MS) as f:
        start = cursor_of(f, chat)

        def asked():
            with APP.lock:
                return len(APP.calls) + APP.slow_started

        def wait_asked(n):
            """Until the app has been asked n more times: then the client leaves."""
            deadline = time.monotonic() + WAIT
            while asked() < n and time.monotonic() < deadline:
                time.sleep(0.01)
            assert asked() >= n, "the app was asked %d times, expected %d" % (asked() - base, n - base)

        n_sub = len(APP.find("/cb/sub"))
        n_pub = len(APP.find("/cb/pub"))
        base = asked()

        async def leave_ws():
            w = await WS.open(f, cookie="session=sleepy")
            await w.send({"type": "subscribe", "channel": ch, "ref": 1})
            await w.send({"type": "subscribe", "channel": slowsub, "ref": 2})
            await w.send({"type": "publish", "channel": chat, "data": "sleep:300", "ref": 3})
            await w.send({"type": "publish", "channel": slowpub, "data": "x", "ref": 4})
            await asyncio.to_thread(wait_asked, base + 4)
            await w.close()
        arun(leave_ws())

        body = json.dumps({"client": client_id(f.port, "gone-1"), "ops": [op(1, chat, "sleep:300"), op(2, chat, "pub:after")]})
        for raw in ("GET /ferry/sse?ch=%s HTTP/1.1\r\nHost: x\r\nCookie: session=sleepy\r\n\r\n" % ch,
                    "GET /ferry/sse?ch=%s HTTP/1.1\r\nHost: x\r\n\r\n" % slowsub,
                    "GET /ferry/poll?ch=%s HTTP/1.1\r\nHost: x\r\nCookie: session=sleepy\r\n\r\n" % ch,
                    "GET /ferry/poll?ch=%s HTTP/1.1\r\nHost: x\r\n\r\n" % slowsub,
                    "POST /ferry/send HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                    "Content-Length: %d\r\n\r\n%s" % (len(body), body)):
            n = asked()
            sock = socket.create_connection(("127.0.0.1", f.port), timeout=WAIT)
            sock.sendall(raw.encode())
            wait_asked(n + 1)
            sock.close()
        # the app answers the sleepy ones after the clients left, the slow
        # ones too late; ferry is still fine after both
        time.sleep(TIMEOUT_MS / 1000.0 + 0.5)
        assert len(APP.find("/cb/sub")) - n_sub == 3, APP.find("/cb/sub")[n_sub:]
        assert f.proc.poll() is None, "ferryd died"
        # what the app published for the POST send that lost its client is on
        # the channel, in order (the batch goes on without it); the WebSocket's
        # may be (ferry.js publishes again after a reconnect anyway)
        got = history(f, chat, start)
        assert got[-2:] == ["PUB(sleep)", "PUB(after)"] and got.count("PUB(sleep)") in (1, 2) \
            and len(got) in (2, 3), got
        assert len(APP.find("/cb/pub")) - n_pub == 3, APP.find("/cb/pub")[n_pub:]

        async def still_works():
            w = await WS.open(f, cookie="session=alice")
            await w.subscribe(ch, ref=1)
            m = await w.publish(chat, "reply:ok", ref=2)
            assert m.get("reply") == "re:ok", m
            await w.close()
        arun(still_works())

        # SIGTERM with callbacks pending: the SSE request waiting for the app
        # is told 503 at once, the WebSocket closed 1012, and ferryd exits 0
        async def drain():
            base = APP.slow_started
            w = await WS.open(f)
            await w.send({"type": "publish", "channel": slowpub, "data": "x", "ref": 1})
            sock = socket.create_connection(("127.0.0.1", f.port), timeout=WAIT)
            sock.sendall(("GET /ferry/sse?ch=%s HTTP/1.1\r\nHost: x\r\n\r\n" % slowsub).encode())
            deadline = time.monotonic() + WAIT
            while APP.slow_started - base < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert APP.slow_started - base == 2, APP.slow_started - base
            t0 = time.monotonic()
            f.signal(signal.SIGTERM)
            head = await asyncio.to_thread(sock.recv, 4096)
            sock.close()
            assert head.startswith(b"HTTP/1.1 503") and b"Retry-After:" in head, head
            try:
                while True:
                    m = await w.recv()
                    assert m.get("ref") != 1 or m["type"] == "error", m
            except websockets.ConnectionClosed as e:
                assert e.code == 1012, e
            assert time.monotonic() - t0 < TIMEOUT_MS / 1000.0, "the drain waited for the app"
        arun(drain())
        assert f.wait(WAIT) == 0

if __name__ == "__main__":
    try:
        run([
            test_subscribe_websocket_by_cookie,
            test_subscribe_sse_by_cookie,
            test_subscribe_poll_by_cookie,
            test_subscribe_app_error_is_unavailable,
            test_identity_reaches_publish_callback,
            test_ws_publish_callback,
            test_send_publish_callback,
            test_reply_only_to_sender_sse_poll,
            test_app_down_unavailable,
            test_app_slow_unavailable,
            test_clients_gone_mid_callback,
            test_many_concurrent_in_order,
        ])
    finally:
        APP_SERVER.shutdown()
