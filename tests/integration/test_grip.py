#!/usr/bin/python3
"""test_grip.py -- ferryd --upstream speaking GRIP (Pushpin's protocol) with the app.

A tiny GRIP app (stdlib http.server, HTTP/1.1 keep-alive, in this process on
its own free port) answers ordinary requests with Grip-* instructions that
each case sets for a path. A real ferryd sits in front of it; clients are raw
sockets, messages come from the publish API (POST /ferry/publish/NAME):
  - Grip-Hold: response -> the first message is the answer's body (the app's
    status and headers kept, Grip-* removed); Grip-Timeout -> the app's body;
  - several channels, prev-id (messages after an id answer at once);
  - Grip-Hold: stream -> head and initial body at once, then each message,
    Grip-Keep-Alive after silence;
  - 200 held clients on one channel, invalid instructions (502), a client
    that goes away (the grip gauge), and Grip-Sig (HS256) with --grip-key;
  - an app that closes mid-answer after Grip-Hold (502, nothing leaked).
"""
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Ferry, HTTPConnection, request_bytes, run  # noqa: E402

SHORT_BODY = 200      # longest acceptable body of ferry's own error answers
ID_RE = re.compile(r"^[0-9a-f]{8}:\d+$")
GRIP_KEY = "s3cret-grip-key"
# under FERRY_TEST_WRAPPER (valgrind...) ferryd is slower: upper time bounds stretch
SLACK = 5.0 if os.environ.get("FERRY_TEST_WRAPPER", "").strip() else 1.0


# ---------------------------------------------------------------- the GRIP app

class GripApp(ThreadingHTTPServer):
    """Answers GET/POST PATH with what a case set for PATH (query ignored):
    status, headers (Grip-* instructions among them) and body. /echo answers
    the request headers it got as JSON. Every request is recorded."""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self):
        super().__init__(("127.0.0.1", 0), GripHandler)
        self.lock = threading.Lock()
        self.routes = {}
        self.requests = []   # (path with query, [(name, value)...])

    def route(self, path, status=200, headers=(), body=b"", reason=None):
        with self.lock:
            self.routes[path] = (status, reason, list(headers), body)

    def seen(self, path_prefix):
        with self.lock:
            return [h for p, h in self.requests if p.startswith(path_prefix)]

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            return  # ferry closed a connection it pooled: not news
        super().handle_error(request, client_address)


class GripHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive towards ferry

    def log_message(self, fmt, *args):
        pass

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        fields = list(self.headers.items())
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.requests.append((self.path, fields))
            spec = self.server.routes.get(path)
        if path == "/echo":
            spec = (200, None, [("Content-Type", "application/json"), ("X-App", "grip-app")],
                    json.dumps({"path": self.path, "headers": fields}).encode())
        if spec is None:
            spec = (404, None, [("Content-Type", "text/plain"), ("X-App", "grip-app")],
                    b"grip app: no route for " + path.encode() + b"\n")
        status, reason, headers, body = spec
        self.send_response(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = handle_any


APP = GripApp()
threading.Thread(target=APP.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
APP_URL = "http://127.0.0.1:%d" % APP.server_address[1]


def grip(*extra):
    return Ferry("--upstream", APP_URL, *extra)


def hold_headers(channel, hold="response", timeout=None, extra=()):
    h = [("Content-Type", "text/x-app; charset=utf-8"), ("X-App", "grip-app"), ("Grip-Hold", hold)]
    if channel is not None:
        h.append(("Grip-Channel", channel))
    if timeout is not None:
        h.append(("Grip-Timeout", str(timeout)))
    return h + list(extra)


# ---------------------------------------------------------------- a raw HTTP client

def grip_fields(r):
    return [(k, v) for k, v in r.fields if k.lower().startswith("grip-")]


class Client(HTTPConnection):
    """One client connection to ferry (harness.HTTPConnection) with get()."""

    def get(self, path, headers=()):
        self.send(request_bytes("GET", path, headers))

    def chunks(self, timeout):
        """HTTPConnection.chunks, but the connection closing inside the body fails."""
        for t, data in super().chunks(timeout):
            yield t, data
            if data is None:
                return
        raise AssertionError("connection closed inside a chunked body (buffer %r)" % self.buf[:100])


def fetch(port, path, headers=(), timeout=10.0):
    with Client(port, timeout) as c:
        c.get(path, headers)
        return c.response(timeout)


def publish(port, channel, data):
    with Client(port) as c:
        body = data.encode()
        c.send(("POST /ferry/publish/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
                % (channel, len(body))).encode() + body)
        r = c.response()
    assert r.status == 200, "POST /ferry/publish/%s: expected 200, got %r" % (channel, r)
    mid = json.loads(r.body)["id"]
    assert ID_RE.match(mid), "publish answered id %r" % mid
    return mid


def grip_gauge(port):
    r = fetch(port, "/ferry/metrics")
    m = re.search(r'^ferry_connections\{transport="grip"\} (\d+)$', r.body.decode(), re.M)
    assert r.status == 200 and m, "GET /ferry/metrics: no ferry_connections{transport=\"grip\"}: %r" % r
    return int(m.group(1))


def wait_gauge(port, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        n = grip_gauge(port)
        if n == want:
            return
        assert time.monotonic() < deadline, (
            'ferry_connections{transport="grip"} is %d after %.0fs, expected %d' % (n, timeout, want))
        time.sleep(0.05)


def check_app_answer(r, status, body, what):
    """r is the app's answer (status, X-App, Content-Type) with this body and no Grip-*."""
    problems = []
    if r.status != status:
        problems.append("status %d, expected the app's %d" % (r.status, status))
    if r.get("x-app") != "grip-app":
        problems.append("X-App %r, expected the app's 'grip-app'" % r.get("x-app"))
    if r.get("content-type") != "text/x-app; charset=utf-8":
        problems.append("Content-Type %r, expected the app's" % r.get("content-type"))
    if grip_fields(r):
        problems.append("Grip-* headers reached the client: %r" % grip_fields(r))
    if r.body != body:
        problems.append("body %r, expected %r" % (r.body, body))
    assert not problems, "%s:\n  %s\n  got %r" % (what, "\n  ".join(problems), r)


def check_plain_after(c, r, what):
    """The connection goes on with the next request (or ends cleanly if ferry said close)."""
    if "close" in (r.get("connection") or "").lower():
        return
    c.get("/echo?after=1")
    r2 = c.response(5)
    assert r2.status == 200 and json.loads(r2.body)["path"] == "/echo?after=1", (
        "%s: the next request on the same connection got %r" % (what, r2))


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def check_grip_sig(token, key, what):
    """token is an HS256 JWT signed with key, not yet expired. Returns the claims."""
    parts = token.split(".")
    assert len(parts) == 3, "%s: Grip-Sig %r is not a JWT (3 dot-separated parts)" % (what, token)
    header = json.loads(b64url_decode(parts[0]))
    claims = json.loads(b64url_decode(parts[1]))
    assert header.get("alg") == "HS256", "%s: JWT header %r, expected alg HS256" % (what, header)
    mac = hmac.new(key.encode(), (parts[0] + "." + parts[1]).encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(b64url_decode(parts[2]), mac), (
        "%s: Grip-Sig %r does not verify with HMAC-SHA256 and the --grip-key" % (what, token))
    exp = claims.get("exp")
    assert isinstance(exp, (int, float)) and exp > time.time(), (
        "%s: claims %r: exp is not in the future (now %d)" % (what, claims, time.time()))
    return claims


def names(fields, name):
    return [v for k, v in fields if k.lower() == name.lower()]


# ---------------------------------------------------------------- cases

def test_response_hold_gets_message():
    APP.route("/hold1", 202, hold_headers("c1", timeout=2, extra=[("Cache-Control", "no-cache")]), b"timeout")
    with grip() as f:
        with Client(f.port) as c:
            c.get("/hold1")
            wait_gauge(f.port, 1)
            c.quiet(0.3)
            t0 = time.monotonic()
            publish(f.port, "c1", "hello from the publisher")
            r = c.response(5)
            assert time.monotonic() - t0 < 1.0 * SLACK, "the held answer came %.2fs after the publish" % (
                time.monotonic() - t0)
            check_app_answer(r, 202, b"hello from the publisher",
                             "GET /hold1 (app: 202, Grip-Hold: response, Grip-Channel: c1), then a publish to c1")
            assert r.get("cache-control") == "no-cache", "the app's Cache-Control was lost: %r" % r
            check_plain_after(c, r, "after a held answer")
        wait_gauge(f.port, 0)


def test_response_hold_timeout():
    APP.route("/hold2", 202, hold_headers("c2", timeout=2), b"timeout")
    with grip() as f:
        with Client(f.port) as c:
            t0 = time.monotonic()
            c.get("/hold2")
            r = c.response(8)
            elapsed = time.monotonic() - t0
            check_app_answer(r, 202, b"timeout", "GET /hold2 (Grip-Timeout: 2), nothing published")
            assert 1.7 <= elapsed <= 3.5 * SLACK, "the timeout answer came after %.2fs (Grip-Timeout: 2)" % elapsed
            check_plain_after(c, r, "after a timed-out hold")
        wait_gauge(f.port, 0)


def test_two_channels():
    APP.route("/hold3", 200, hold_headers("c3-a, c3-b", timeout=10), b"timeout")
    with grip() as f:
        for i, target in enumerate(("c3-b", "c3-a")):
            with Client(f.port) as c:
                c.get("/hold3?i=%d" % i)
                wait_gauge(f.port, 1)
                publish(f.port, "c3-other", "not for this hold")
                c.quiet(0.3)
                publish(f.port, target, "to " + target)
                r = c.response(5)
                check_app_answer(r, 200, ("to " + target).encode(),
                                 "GET /hold3 (Grip-Channel: c3-a, c3-b), then a publish to " + target)
            wait_gauge(f.port, 0)


def test_prev_id_answers_at_once():
    with grip() as f:
        id1 = publish(f.port, "c4", "m1")
        id2 = publish(f.port, "c4", "m2")
        publish(f.port, "c4", "m3")
        APP.route("/hold4", 200, hold_headers("c4; prev-id=%s" % id1, timeout=10), b"timeout")
        t0 = time.monotonic()
        r = fetch(f.port, "/hold4", timeout=10)
        elapsed = time.monotonic() - t0
        check_app_answer(r, 200, b"m2", "GET /hold4 (Grip-Channel: c4; prev-id=%s; m2 and m3 published after it)"
                         % id1)
        assert elapsed < 1.0 * SLACK, "the answer took %.2fs: it should not wait (Grip-Timeout: 10)" % elapsed

        APP.route("/hold4b", 200, hold_headers("c4; prev-id=%s" % id2, timeout=10), b"timeout")
        r = fetch(f.port, "/hold4b", timeout=10)
        check_app_answer(r, 200, b"m3", "GET /hold4b (Grip-Channel: c4; prev-id=%s)" % id2)

        # prev-id = the newest id: nothing is after it, the request waits for the next one
        id4 = publish(f.port, "c4", "m4")
        APP.route("/hold4c", 200, hold_headers("c4; prev-id=%s" % id4, timeout=10), b"timeout")
        with Client(f.port) as c:
            c.get("/hold4c")
            wait_gauge(f.port, 1)
            c.quiet(0.5)
            publish(f.port, "c4", "m5")
            r = c.response(5)
            check_app_answer(r, 200, b"m5", "GET /hold4c (prev-id = the newest id %s), then m5 published" % id4)


def test_stream():
    APP.route("/stream5", 200, hold_headers("c5", hold="stream", extra=[
        ("Grip-Keep-Alive", "ka\\n; format=cstring; timeout=1")]), b"stream start\n")
    with grip() as f:
        with Client(f.port) as c:
            t0 = time.monotonic()
            c.get("/stream5")
            r = c.read_head(3)
            assert time.monotonic() - t0 < 1.0 * SLACK, "the stream's head took %.2fs" % (time.monotonic() - t0)
            problems = []
            if r.status != 200 or r.get("x-app") != "grip-app" or r.get("content-type") != "text/x-app; charset=utf-8":
                problems.append("not the app's status and headers")
            if grip_fields(r):
                problems.append("Grip-* headers reached the client")
            if (r.get("transfer-encoding") or "").lower() != "chunked" or r.get("content-length"):
                problems.append("not chunked")
            assert not problems, "GET /stream5 (Grip-Hold: stream): %s: %r" % ("; ".join(problems), r)

            body = c.chunks(15)
            t_first, first = next(body)
            assert first == b"stream start\n" and t_first - t0 < 1.0 * SLACK, (
                "the stream's initial body: expected b'stream start\\n' at once, got %r after %.2fs" % (
                    first, t_first - t0))
            msgs = ["message %d\n" % i for i in range(1, 6)]
            for m in msgs:
                publish(f.port, "c5", m)
            got = b""
            while len(got) < len("".join(msgs)):
                t_last, d = next(body)
                assert d is not None, "the stream ended after %r" % got
                got += d
            assert got == "".join(msgs).encode(), "published %r in order, the stream carried %r" % (msgs, got)

            # silence: "ka\n" after ~1 s, then again after ~1 s
            for k in range(2):
                t, d = next(body)
                assert d == b"ka\n", "keep-alive %d: expected b'ka\\n', got %r" % (k + 1, d)
                gap = t - t_last
                assert 0.7 <= gap <= 2.0 * SLACK, "keep-alive %d came %.2fs after the last data (timeout=1)" % (k + 1, gap)
                t_last = t
            publish(f.port, "c5", "after keep-alive\n")
            t, d = next(body)
            assert d == b"after keep-alive\n", "after the keep-alives: expected the next message, got %r" % d
            assert grip_gauge(f.port) == 1, "a stream is open: gauge %d" % grip_gauge(f.port)
        wait_gauge(f.port, 0)


def test_many_held_clients():
    n = 200
    APP.route("/hold6", 200, hold_headers("c6", timeout=30), b"timeout")
    with grip() as f:
        clients = []
        try:
            for i in range(n):
                c = Client(f.port, timeout=15)
                c.get("/hold6?i=%d" % i)
                clients.append(c)
            wait_gauge(f.port, n, timeout=20)
            publish(f.port, "c6", "one message for all")
            bad = []
            for i, c in enumerate(clients):
                try:
                    r = c.response(10)
                    if r.status != 200 or r.body != b"one message for all" or r.get("x-app") != "grip-app":
                        bad.append("client %d: %r" % (i, r))
                except AssertionError as e:
                    bad.append("client %d: %s" % (i, e))
            assert not bad, "%d of %d held clients did not get the message:\n  %s" % (
                len(bad), n, "\n  ".join(bad[:5]))
        finally:
            for c in clients:
                c.close()
        wait_gauge(f.port, 0)


def test_invalid_instructions_502():
    APP.route("/bogus", 200, hold_headers("c7", hold="bogus", timeout=2), b"app body: bogus hold")
    APP.route("/nochannel", 200, hold_headers(None, timeout=2), b"app body: no channel")
    APP.route("/nochannel-stream", 200, hold_headers(None, hold="stream"), b"app body: no channel")
    APP.route("/hold7", 200, hold_headers("c7ok", timeout=10), b"timeout")
    with grip() as f:
        with Client(f.port) as held:
            held.get("/hold7")
            wait_gauge(f.port, 1)
            for path, what in (("/bogus", "Grip-Hold: bogus"),
                               ("/nochannel", "Grip-Hold: response without Grip-Channel"),
                               ("/nochannel-stream", "Grip-Hold: stream without Grip-Channel")):
                r = fetch(f.port, path, timeout=5)
                ok = (r.status == 502 and r.get("x-app") is None and not grip_fields(r)
                      and 0 < len(r.body) <= SHORT_BODY and not r.body.startswith(b"app body"))
                assert ok, "GET %s (app answers %s): expected ferry's 502 with a short body, got %r" % (
                    path, what, r)
            r = fetch(f.port, "/echo?after=invalid")
            assert r.status == 200 and r.get("x-app") == "grip-app", "a plain request after the 502s: %r" % r
            publish(f.port, "c7ok", "still held")
            r = held.response(5)
            check_app_answer(r, 200, b"still held", "a hold made before the invalid answers")
        wait_gauge(f.port, 0)


def test_long_content_type_refused():
    """A held answer's Content-Type longer than ferry keeps (127 bytes) is
    refused 502, not sent cut short (it was cut to its first 127 bytes)."""
    ctype = "text/x-app; charset=utf-8; " + "p=" + "v" * 200
    APP.route("/longtype", 200, [("Content-Type", ctype), ("X-App", "grip-app"),
                                 ("Grip-Hold", "response"), ("Grip-Channel", "c-longtype"),
                                 ("Grip-Timeout", "1")], b"timeout")
    with grip() as f:
        r = fetch(f.port, "/longtype", timeout=5)
        assert r.status == 502 and r.get("x-app") is None, \
            "Content-Type of %d bytes: expected 502, got %r" % (len(ctype), r)
        wait_gauge(f.port, 0)


def test_disconnect_releases():
    APP.route("/hold8", 200, hold_headers("c8", timeout=30), b"timeout")
    APP.route("/stream8", 200, hold_headers("c8", hold="stream"), b"start\n")
    with grip() as f:
        for path in ("/hold8", "/stream8"):
            c = Client(f.port)
            c.get(path)
            wait_gauge(f.port, 1)
            c.close()
            wait_gauge(f.port, 0, timeout=5)
            publish(f.port, "c8", "nobody is listening")
            r = fetch(f.port, "/echo?after=disconnect")
            assert r.status == 200 and r.get("x-app") == "grip-app", (
                "a plain request after a held client (%s) went away: %r" % (path, r))
        with Client(f.port) as c:
            c.get("/hold8?again=1")
            wait_gauge(f.port, 1)
            publish(f.port, "c8", "for the new hold")
            check_app_answer(c.response(5), 200, b"for the new hold", "a new hold after disconnects")
        wait_gauge(f.port, 0)


def test_grip_sig():
    APP.route("/hold9", 200, hold_headers("c9", timeout=1), b"timeout")
    with grip("--grip-key", GRIP_KEY) as f:
        for headers, what in (((), "no Grip-Sig from the client"),
                              ((("Grip-Sig", "forged.by.client"),), "a client-sent Grip-Sig")):
            r = fetch(f.port, "/echo?sig=1", headers)
            assert r.status == 200, r
            sigs = names(json.loads(r.body)["headers"], "Grip-Sig")
            assert len(sigs) == 1, "with --grip-key, %s: the app saw Grip-Sig %r, expected ferry's one" % (
                what, sigs)
            check_grip_sig(sigs[0], GRIP_KEY, "with --grip-key, " + what)
            try:
                check_grip_sig(sigs[0], GRIP_KEY + "x", "")
                raise RuntimeError("the verifier accepted a wrong key")
            except AssertionError:
                pass
        before = len(APP.seen("/hold9"))
        r = fetch(f.port, "/hold9", timeout=5)
        assert r.body == b"timeout", r
        sigs = [names(h, "Grip-Sig") for h in APP.seen("/hold9")[before:]]
        assert len(sigs) == 1 and len(sigs[0]) == 1, "a held request: the app saw Grip-Sig %r" % sigs
        check_grip_sig(sigs[0][0], GRIP_KEY, "the request of a hold")
    with grip() as f:
        r = fetch(f.port, "/echo?nosig=1", [("Grip-Sig", "forged.by.client")])
        sigs = names(json.loads(r.body)["headers"], "Grip-Sig")
        assert sigs == [], "without --grip-key, a client-sent Grip-Sig: the app saw %r" % sigs


def test_app_closes_mid_grip_answer():
    """The app sends a Grip-Hold head and closes before its body ends: the
    client gets ferry's 502, and the hold begun at the head is freed (under
    ASan, ferryd's exit is leak-checked). Found by fuzz/fuzz_revproxy."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)

    def app():
        conn, _ = lsock.accept()
        with conn:
            conn.settimeout(5)
            got = b""
            while b"\r\n\r\n" not in got:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                got += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nGrip-Hold: stream\r\nGrip-Channel: c9\r\n"
                         b"Content-Length: 10\r\n\r\nstart")
    t = threading.Thread(target=app, daemon=True)
    t.start()
    try:
        with Ferry("--upstream", "http://127.0.0.1:%d" % lsock.getsockname()[1]) as f:
            r = fetch(f.port, "/cut", timeout=5)
            assert r.status == 502 and not grip_fields(r) and 0 < len(r.body) <= SHORT_BODY, (
                "a Grip-Hold answer cut mid-body: expected ferry's 502, got %r" % r)
            assert grip_gauge(f.port) == 0, "a hold that never started is counted"
        t.join(5)
    finally:
        lsock.close()


def test_repeated_keep_alive():
    """Two Grip-Keep-Alive fields: the last wins and the first is freed
    (ferryd's exit is leak-checked under ASan). Found by fuzz/fuzz_revproxy."""
    APP.route("/ka10", 200, hold_headers("c10", hold="stream", extra=(
        ("Grip-Keep-Alive", "first; timeout=30"), ("Grip-Keep-Alive", "second; timeout=30"))),
        b"start\n")
    with grip() as f:
        c = Client(f.port)
        c.get("/ka10")
        wait_gauge(f.port, 1)
        c.close()
        wait_gauge(f.port, 0, timeout=5)


if __name__ == "__main__":
    try:
        run([test_response_hold_gets_message, test_response_hold_timeout, test_two_channels,
             test_prev_id_answers_at_once, test_stream, test_many_held_clients, test_invalid_instructions_502,
             test_long_content_type_refused,
             test_disconnect_releases, test_grip_sig, test_app_closes_mid_grip_answer,
             test_repeated_keep_alive])
    finally:
        APP.shutdown()
        APP.server_close()
