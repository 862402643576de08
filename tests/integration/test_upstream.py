#!/usr/bin/python3
"""test_upstream.py -- ferryd --upstream: the reverse proxy to the legacy app.

A real ferryd in front of legacy_app.py (stdlib, in this process, on its own
free port), driven with raw sockets, http.client, urllib and websockets:
methods, paths, headers (Host, X-Forwarded-*, hop-by-hop, Grip-Sig), bodies
streamed both ways without buffering (peak RSS), keep-alive reuse towards the
app, HEAD/204/304, pipelining, the upstream timeout (504), an unreachable app
(502), an app that dies mid-body, the WebSocket tunnel, and ferry's own paths.
"""
import asyncio
import base64
import hashlib
import http.client
import json
import os
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder: legacy_app.py
from harness import FERRYD, Ferry, HTTPConnection, free_port, request_bytes, run, wait_port  # noqa: E402
import legacy_app  # noqa: E402

import websockets  # noqa: E402

SHORT_BODY = 200            # longest acceptable body of ferry's own error answers
MiB = 1 << 20
RSS_BUDGET = 32 * MiB       # a 256 MiB transfer may grow ferryd's VmHWM by at most this
WRAPPED = bool(os.environ.get("FERRY_TEST_WRAPPER", "").strip())

APP_PORT, APP = legacy_app.start()
APP_URL = "http://127.0.0.1:%d" % APP_PORT

# ASan keeps freed memory in a quarantine (256 MiB by default) before reusing
# it: that is the sanitizer's memory, not ferry's, so the RSS cases shrink it.
SMALL_QUARANTINE = {"ASAN_OPTIONS": ":".join(
    x for x in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=8") if x)}


def _timeout_arg(ms):
    """--upstream-timeout is documented as milliseconds; if --help says it takes a
    TIME like the other timeouts, say "ms" explicitly."""
    try:
        out = subprocess.run([FERRYD, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    line = next((l for l in out.splitlines() if "--upstream-timeout" in l), "")
    return "%dms" % ms if "TIME" in line else str(ms)


def proxy(*extra, env=None):
    """A ferryd proxying to the app; --max-body is small on purpose (it must not
    apply to proxied requests)."""
    return Ferry("--upstream", APP_URL, "--max-body", "64K", *extra, env=env)


def one(port, method, path, headers=(), body=None, host="127.0.0.1", timeout=10.0):
    c = HTTPConnection(port, timeout)
    try:
        c.send(request_bytes(method, path, headers, body, host))
        return c.response(method, timeout)
    finally:
        c.close()


def seen(r):
    """The app's view of a request, from its /headers answer."""
    assert r.status == 200 and r.get("x-legacy-app") == "1", "expected the app's /headers answer, got %r" % r
    d = json.loads(r.body)
    hv = {}
    for k, v in d["headers"]:
        hv.setdefault(k.lower(), []).append(v)
    d["h"] = {k: ", ".join(v) for k, v in hv.items()}
    return d


def from_app(r):
    return r.get("x-legacy-app") is not None


def ferry_error(r, status, what):
    assert r.status == status, "%s: expected %d from ferry, got %r" % (what, status, r)
    assert not from_app(r), "%s: the answer came from the app: %r" % (what, r)
    assert (r.get("content-type") or "").startswith("text/plain"), "%s: expected text/plain, got %r" % (what, r)
    assert 0 < len(r.body) <= SHORT_BODY, "%s: expected a short body, got %r" % (what, r.body)


def vmhwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM for pid %d" % pid)


def check_rss(f, before, what):
    if WRAPPED:
        print("     (%s: RSS not checked under FERRY_TEST_WRAPPER)" % what)
        return
    grew = vmhwm(f.proc.pid) - before
    print("     %s: ferryd VmHWM grew by %.1f MiB" % (what, grew / MiB))
    assert grew <= RSS_BUDGET, "%s: ferryd's peak RSS grew by %.1f MiB (budget %d MiB): the body was buffered" % (
        what, grew / MiB, RSS_BUDGET // MiB)


def upload_pieces(size, chunk=MiB):
    """Deterministic upload data, and the sha256 it should have."""
    i = 0
    base = bytes(range(256)) * (chunk // 256)
    while size > 0:
        p = hashlib.sha256(b"up %d" % i).digest() + base[32:]
        p = p[:min(size, chunk)]
        size -= len(p)
        i += 1
        yield p


def run_ws(coro, timeout=15):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ---------------------------------------------------------------- routing

def test_ferry_paths_stay_ferrys():
    before = len(APP.ferry_paths)
    with proxy() as f:
        r = one(f.port, "GET", "/ferry/healthz")
        assert r.status == 200 and not from_app(r), "GET /ferry/healthz: expected ferry's 200, got %r" % r
        assert (r.get("content-type") or "").startswith("application/json"), r
        assert json.loads(r.body)["status"] == "ok", r.body
        r = one(f.port, "GET", "/ferry/no-such-route")
        assert r.status == 404 and not from_app(r), "GET /ferry/no-such-route: expected ferry's 404, got %r" % r
        r = one(f.port, "GET", "/ferry/ferry.js")
        assert r.status == 200 and not from_app(r) and b"Ferry" in r.body, "GET /ferry/ferry.js: %r" % r

        async def ws():
            async with websockets.connect(f.ws_url + "/ferry/ws?ch=news", open_timeout=5, close_timeout=2) as w:
                first = json.loads(await asyncio.wait_for(w.recv(), 5))
                assert first.get("type") == "open", "ws /ferry/ws: expected ferry's open frame, got %r" % first
        run_ws(ws())

        # everything else is the app's, including "/" and look-alikes of the prefix
        r = one(f.port, "GET", "/")
        assert r.status == 200 and from_app(r), "GET /: expected the app's page, got %r" % r
        assert b"/ferry/ferry.js" in r.body, r.body[:200]
        r = one(f.port, "GET", "/ferryboat")
        assert r.status == 404 and from_app(r), "GET /ferryboat (outside /ferry/): expected the app's 404, got %r" % r
    assert APP.ferry_paths[before:] == [], "paths under /ferry/ reached the app: %r" % APP.ferry_paths[before:]


def test_no_upstream():
    n = APP.snapshot()["requests"]
    with Ferry() as f:
        r = one(f.port, "GET", "/")
        assert r.status == 302 and r.get("location") == "/ferry/", "GET / without --upstream: %r" % r
        r = one(f.port, "GET", "/form")
        assert r.status == 404 and not from_app(r), "GET /form without --upstream: expected 404, got %r" % r
    assert APP.snapshot()["requests"] == n


# ---------------------------------------------------------------- requests

def test_methods_paths_bodies():
    path = "/headers/a%20b/%C3%A9;p=1?x=1&y=%2F&z&q=a+b"
    with proxy() as f:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            body = None if method in ("GET", "OPTIONS") else ("body of %s \x00\xff" % method).encode("latin-1")
            d = seen(one(f.port, method, path, [("Content-Type", "application/octet-stream")] if body else [], body))
            assert d["method"] == method, "%s %s: app saw method %r" % (method, path, d["method"])
            assert d["path"] == path, "%s %s: app saw path %r" % (method, path, d["path"])
            want = body or b""
            assert (d["body_size"], d["body_sha256"]) == (len(want), hashlib.sha256(want).hexdigest()), (
                "%s %s: app saw a %d-byte body, sent %d" % (method, path, d["body_size"], len(want)))


def test_client_keepalive():
    """A client's HTTP/1.1 connection stays open across proxied answers (and ferry's own)."""
    with proxy() as f:
        c = HTTPConnection(f.port)
        try:
            for i, path in enumerate(("/headers?ka=1", "/status?code=404", "/ferry/healthz", "/headers?ka=4")):
                c.send(request_bytes("GET", path))
                try:
                    r = c.response()
                except AssertionError as e:
                    raise AssertionError("request %d (GET %s) on a keep-alive connection: %s" % (i + 1, path, e))
                assert "close" not in _connection_tokens({"connection": r.get("connection", "")}), (
                    "GET %s (HTTP/1.1, no Connection: close from the client): ferry answered Connection: close; "
                    "%r" % (path, r))
        finally:
            c.close()


def test_request_headers_forwarded():
    with proxy() as f:
        r = one(f.port, "GET", "/headers?fwd=1", host="example.test:1234", headers=[
            ("X-Forwarded-For", "10.1.2.3"), ("Grip-Sig", "forged.jwt.sig"), ("X-Custom", "abc"),
            ("X-Dup", "one"), ("X-Dup", "two"), ("Cookie", "sid=42"), ("User-Agent", "test-upstream")])
        h = seen(r)["h"]
        problems = []
        for name, want in (("host", "example.test:1234"), ("x-forwarded-for", "10.1.2.3, 127.0.0.1"),
                           ("x-forwarded-proto", "http"), ("x-forwarded-host", "example.test:1234"),
                           ("x-custom", "abc"), ("x-dup", "one, two"), ("cookie", "sid=42"),
                           ("user-agent", "test-upstream")):
            if h.get(name) != want:
                problems.append("%s: expected %r, got %r" % (name, want, h.get(name)))
        if "grip-sig" in h:
            problems.append("grip-sig from the client reached the app: %r" % h["grip-sig"])
        assert not problems, "GET /headers, app saw:\n  " + "\n  ".join(problems) + "\n  all: %r" % h

        h = seen(one(f.port, "GET", "/headers?fwd=2"))["h"]
        assert h.get("x-forwarded-for") == "127.0.0.1", "no client X-Forwarded-For: app saw %r" % h.get(
            "x-forwarded-for")
        assert h.get("host") == "127.0.0.1", h


def assert_plain_http_after(c, r, path):
    """After answer r, the connection carries nothing more than HTTP: the next
    request is answered normally, or (if ferry said Connection: close) EOF
    follows with no stray bytes (client keep-alive is test_client_keepalive's)."""
    if "close" in _connection_tokens({"connection": r.get("connection", "")}):
        rest = c.wait_eof(5)
        assert rest == b"", "bytes after the answer: %r" % rest[:200]
        return
    c.send(request_bytes("GET", path))
    d = seen(c.response())
    assert d["path"] == path, d


def _connection_tokens(h):
    return {t.strip().lower() for t in h.get("connection", "").split(",") if t.strip()}


def test_request_hop_by_hop_removed():
    with proxy() as f:
        h = seen(one(f.port, "GET", "/headers?hop=1", headers=[
            ("Connection", "keep-alive, X-Hop-Custom"), ("X-Hop-Custom", "secret"),
            ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"), ("TE", "trailers"),
            ("Trailer", "X-Foo"), ("X-End-To-End", "kept")]))["h"]
        leaked = []
        for name, sent in (("x-hop-custom", "secret"), ("keep-alive", "timeout=5"),
                           ("proxy-connection", "keep-alive"), ("te", "trailers"), ("trailer", "X-Foo")):
            if name in h:
                leaked.append("%s: %r" % (name, h[name]))
        if _connection_tokens(h) - {"keep-alive", "close"}:
            leaked.append("connection: %r" % h["connection"])
        assert not leaked, "hop-by-hop request headers reached the app: %s" % leaked
        assert h.get("x-end-to-end") == "kept", h


def test_request_upgrade_not_websocket():
    """Upgrade: h2c is not a WebSocket: an ordinary request, Upgrade removed, no tunnel."""
    with proxy() as f:
        c = HTTPConnection(f.port)
        try:
            c.send(request_bytes("GET", "/headers?h2c=1", [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                                                  ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]))
            r = c.response()
            h = seen(r)["h"]
            leaked = [n for n in ("upgrade", "http2-settings") if n in h]
            if _connection_tokens(h) - {"keep-alive", "close"}:
                leaked.append("connection: " + h["connection"])
            assert not leaked, "GET with Upgrade: h2c: app saw %s" % leaked
            assert_plain_http_after(c, r, "/headers?after=h2c")
        finally:
            c.close()


def test_chunked_request_body():
    sizes = [1, 7, 4096, 65536 + 3, 10, 300000, 2, 1 << 20]
    data = b"".join(hashlib.sha256(b"%d" % i).digest() * (s // 32 + 1) for i, s in enumerate(sizes))
    with proxy() as f:
        c = HTTPConnection(f.port)
        try:
            c.send(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            pos = 0
            for s in sizes:
                c.send(b"%x\r\n%s\r\n" % (s, data[pos:pos + s]))
                pos += s
            c.send(b"0\r\n\r\n")
            r = c.response(timeout=20)
            want = {"size": pos, "sha256": hashlib.sha256(data[:pos]).hexdigest()}
            assert r.status == 200 and json.loads(r.body) == want, (
                "chunked POST /upload of %d bytes: expected %r, got %r" % (pos, want, r))
            assert_plain_http_after(c, r, "/headers?after=chunked")
        finally:
            c.close()


def _upload_streams(f, chunked):
    uid = "stream-%s-%d" % (chunked, time.monotonic_ns())
    total, first = 4 * MiB, 256 * 1024
    data = b"s" * total
    c = HTTPConnection(f.port)
    try:
        framing = "Transfer-Encoding: chunked" if chunked else "Content-Length: %d" % total
        c.send(("PUT /upload?id=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n\r\n" % (uid, framing)).encode())
        c.send((b"%x\r\n%s\r\n" % (first, data[:first])) if chunked else data[:first])
        deadline = time.monotonic() + 5
        while APP.upload_seen.get(uid, 0) == 0:
            assert time.monotonic() < deadline, (
                "PUT /upload (%s): the app got no body byte within 5 s of the client sending the first %d KiB "
                "(request body held back by ferry)" % ("chunked" if chunked else "Content-Length", first // 1024))
            time.sleep(0.02)
        rest = data[first:]
        c.send((b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest)) if chunked else rest)
        r = c.response(timeout=20)
        want = {"size": total, "sha256": hashlib.sha256(data).hexdigest()}
        assert r.status == 200 and json.loads(r.body) == want, "PUT /upload: expected %r, got %r" % (want, r)
    finally:
        c.close()


def test_upload_streams_before_complete():
    with proxy() as f:
        _upload_streams(f, chunked=False)
        _upload_streams(f, chunked=True)


def test_upload_256mib_rss():
    size = 256 * MiB
    with proxy(env=SMALL_QUARANTINE) as f:
        seen(one(f.port, "GET", "/headers?warm=1"))
        before = vmhwm(f.proc.pid) if not WRAPPED else 0
        c = HTTPConnection(f.port, timeout=30)
        try:
            # the app waits 1 s before reading: ferry must hold back, not buffer
            c.send(b"PUT /upload?pause_ms=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % size)
            h = hashlib.sha256()
            t0 = time.monotonic()
            for p in upload_pieces(size):
                h.update(p)
                c.send(p)
            r = c.response(timeout=30)
            want = {"size": size, "sha256": h.hexdigest()}
            assert r.status == 200 and json.loads(r.body) == want, "PUT /upload 256 MiB: expected %r, got %r" % (
                want, r)
            print("     256 MiB upload in %.1fs" % (time.monotonic() - t0))
        finally:
            c.close()
        check_rss(f, before, "256 MiB Content-Length upload to an app that waits 1 s before reading")
        # --max-body still guards ferry's own routes on this instance
        r = one(f.port, "POST", "/ferry/publish/big", body=b"x" * (100 * 1024))
        assert r.status == 413, "POST /ferry/publish with 100K and --max-body 64K: expected 413, got %r" % r


def _download(f, path, size, pause_after=MiB, pause=1.0):
    c = HTTPConnection(f.port, timeout=30)
    try:
        c.send(request_bytes("GET", path))
        r = c.read_head()
        assert r.status == 200 and from_app(r), "GET %s: %r" % (path, r)
        h = hashlib.sha256()
        n, paused = 0, False
        for p in c.iter_body(r, timeout=60):
            h.update(p)
            n += len(p)
            if not paused and n >= pause_after:
                time.sleep(pause)  # a slow reader: ferry must not read ahead from the app
                paused = True
        assert r.complete and n == size, "GET %s: got %d bytes (complete=%s), expected %d" % (
            path, n, r.complete, size)
        assert h.hexdigest() == legacy_app.body_sha256(size), "GET %s: body differs from the app's" % path
        return r
    finally:
        c.close()


def test_download_256mib_rss():
    size = 256 * MiB
    with proxy(env=SMALL_QUARANTINE) as f:
        seen(one(f.port, "GET", "/headers?warm=1"))
        before = vmhwm(f.proc.pid) if not WRAPPED else 0
        t0 = time.monotonic()
        r = _download(f, "/download?size=%d" % size, size)
        print("     256 MiB download in %.1fs" % (time.monotonic() - t0))
        assert r.get("content-length") == str(size) or r.framing == "chunked", r
        check_rss(f, before, "256 MiB Content-Length download")


def test_chunked_transfers_rss():
    size = 128 * MiB + 12345
    with proxy(env=SMALL_QUARANTINE) as f:
        seen(one(f.port, "GET", "/headers?warm=1"))
        before = vmhwm(f.proc.pid) if not WRAPPED else 0
        _download(f, "/download?size=%d&chunked=1" % size, size)
        check_rss(f, before, "128 MiB chunked download")
        before = vmhwm(f.proc.pid) if not WRAPPED else 0
        c = HTTPConnection(f.port, timeout=30)
        try:
            c.send(b"POST /upload?pause_ms=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            h = hashlib.sha256()
            for p in upload_pieces(size, chunk=MiB - 1):
                h.update(p)
                c.send(b"%x\r\n%s\r\n" % (len(p), p))
            c.send(b"0\r\n\r\n")
            r = c.response(timeout=30)
            want = {"size": size, "sha256": h.hexdigest()}
            assert r.status == 200 and json.loads(r.body) == want, "chunked POST /upload: expected %r, got %r" % (
                want, r)
        finally:
            c.close()
        check_rss(f, before, "128 MiB chunked upload to an app that waits 1 s before reading")


def test_drip_streams():
    with proxy() as f:
        c = HTTPConnection(f.port)
        try:
            c.send(request_bytes("GET", "/drip?n=3&ms=700"))
            r = c.read_head(timeout=5)
            assert r.status == 200 and from_app(r), r
            got, times = b"", []
            for p in c.iter_body(r, timeout=10):
                got += p
                times.append((time.monotonic(), got))
            assert got == b"chunk 0\nchunk 1\nchunk 2\n" and r.complete, "GET /drip: got %r (complete=%s)" % (
                got, r.complete)
            sent = list(APP.drip_sent)
            first_seen, so_far = times[0]
            assert so_far == b"chunk 0\n" and first_seen < sent[1], (
                "GET /drip?n=3&ms=700: the client first saw %r, %.2fs after the app sent chunk 0 (chunk 1 was "
                "sent %.2fs after chunk 0): not streamed" % (so_far, first_seen - sent[0], sent[1] - sent[0]))
        finally:
            c.close()


# ---------------------------------------------------------------- responses

def test_status_and_response_headers():
    with proxy() as f:
        for code in (201, 404, 418, 500, 503):
            r = one(f.port, "GET", "/status?code=%d" % code)
            assert r.status == code and from_app(r) and r.body == b"status %d from the app\n" % code, (
                "GET /status?code=%d: expected the app's %d, got %r" % (code, code, r))
        r = one(f.port, "GET", "/hop")
        assert r.status == 200 and r.body == b"hop-by-hop test\n", r
        leaked = ["%s: %s" % (k, v) for k, v in r.fields if k.lower() in (
            "x-app-hop", "x-app-hop2", "proxy-connection", "upgrade", "trailer", "te")]
        if r.get("keep-alive") and "99" in r.get("keep-alive"):
            leaked.append("keep-alive: " + r.get("keep-alive"))
        if _connection_tokens({"connection": r.get("connection", "")}) - {"keep-alive", "close"}:
            leaked.append("connection: " + r.get("connection"))
        assert not leaked, "GET /hop: hop-by-hop response headers reached the client: %s" % leaked
        assert r.get("x-app-end-to-end") == "kept", r
        assert r.h.get("set-cookie") == ["a=1; Path=/", "b=2; Path=/"], "Set-Cookie: %r" % r.h.get("set-cookie")


def test_head_204_304():
    with proxy() as f:
        for method, path, status, check in (
                ("HEAD", "/download?size=12345", 200, lambda r: r.get("content-length") == "12345"),
                ("GET", "/nocontent", 204, lambda r: True),
                ("GET", "/notmodified", 304, lambda r: r.get("etag") == '"v1"'),
                ("DELETE", "/nocontent", 204, lambda r: True)):
            c = HTTPConnection(f.port)
            try:
                c.send(request_bytes(method, path))
                r = c.response(method)
                assert r.status == status and from_app(r) and check(r), "%s %s: expected the app's %d, got %r" % (
                    method, path, status, r)
                # had the answer carried body bytes, they would show here
                assert_plain_http_after(c, r, "/headers?after=" + path[1:])
            finally:
                c.close()


def answer(c, i, method="GET"):
    try:
        return c.response(method)
    except AssertionError as e:
        raise AssertionError("pipelined answer %d: %s" % (i, e))


def test_pipelined_in_order():
    body = b"p" * 100000
    with proxy() as f:
        c = HTTPConnection(f.port)
        try:
            c.send(request_bytes("GET", "/slow?ms=300") + request_bytes("GET", "/headers?n=2")
                   + request_bytes("POST", "/upload", body=body) + request_bytes("GET", "/drip?n=2&ms=50")
                   + request_bytes("GET", "/status?code=404") + request_bytes("HEAD", "/download?size=10")
                   + request_bytes("PUT", "/headers?n=7", body=b"seven"))
            r = answer(c, 1)
            assert r.body == b"slept 300\n", "1st pipelined answer: %r" % r
            d = seen(answer(c, 2))
            assert d["path"] == "/headers?n=2", "2nd pipelined answer is for %r" % d["path"]
            r = answer(c, 3)
            assert json.loads(r.body) == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}, (
                "3rd pipelined answer: %r" % r)
            r = answer(c, 4)
            assert r.body == b"chunk 0\nchunk 1\n", "4th pipelined answer: %r" % r
            r = answer(c, 5)
            assert r.status == 404 and r.body == b"status 404 from the app\n", "5th pipelined answer: %r" % r
            r = answer(c, 6, "HEAD")
            assert r.status == 200 and r.get("content-length") == "10", "6th pipelined answer: %r" % r
            d = seen(answer(c, 7))
            assert (d["method"], d["path"], d["body_size"]) == ("PUT", "/headers?n=7", 5), "7th: %r" % d
        finally:
            c.close()


def test_pipelined_mixed_with_ferry_routes():
    with proxy() as f:
        c = HTTPConnection(f.port)
        try:
            c.send(request_bytes("GET", "/slow?ms=300") + request_bytes("GET", "/ferry/healthz") + request_bytes("GET", "/headers?n=3")
                   + request_bytes("POST", "/ferry/publish/pipe", body=b"hi") + request_bytes("GET", "/headers?n=5"))
            r = answer(c, 1)
            assert r.body == b"slept 300\n", "1st (app, slow) answer: %r" % r
            r = answer(c, 2)
            assert r.status == 200 and not from_app(r) and json.loads(r.body).get("status") == "ok", (
                "2nd (ferry's /ferry/healthz) answer: %r" % r)
            assert seen(answer(c, 3))["path"] == "/headers?n=3"
            r = answer(c, 4)
            assert r.status == 200 and "id" in json.loads(r.body), "4th (ferry publish) answer: %r" % r
            assert seen(answer(c, 5))["path"] == "/headers?n=5"
        finally:
            c.close()


# ---------------------------------------------------------------- connections to the app

def test_keepalive_reuse():
    per_client, clients = 25, 4
    errors, ports = [], set()
    lock = threading.Lock()
    with proxy() as f:
        seen(one(f.port, "GET", "/headers?warm=1"))
        before = APP.snapshot()

        reconnects = [0]

        def keepalive_client(i):
            c = HTTPConnection(f.port)
            try:
                for k in range(per_client):
                    c.send(request_bytes("GET", "/headers?c=%d&k=%d" % (i, k)))
                    r = c.response()
                    d = seen(r)
                    with lock:
                        ports.add(d["peer"][1])
                    if "close" in _connection_tokens({"connection": r.get("connection", "")}):
                        # not this case's business (see test_client_keepalive): reconnect
                        c.close()
                        c = HTTPConnection(f.port)
                        with lock:
                            reconnects[0] += 1
            except Exception as e:  # noqa: BLE001
                errors.append("client %d: %r" % (i, e))
            finally:
                c.close()

        def closing_client():
            try:
                for k in range(per_client):
                    d = seen(one(f.port, "GET", "/headers?fresh=%d" % k, headers=[("Connection", "close")]))
                    with lock:
                        ports.add(d["peer"][1])
            except Exception as e:  # noqa: BLE001
                errors.append("closing client: %r" % e)

        threads = [threading.Thread(target=keepalive_client, args=(i,)) for i in range(clients)]
        threads.append(threading.Thread(target=closing_client))
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "clients did not finish within 30 s"
        assert not errors, errors
        after = APP.snapshot()
        n_req = after["requests"] - before["requests"]
        n_conn = after["connections"] - before["connections"]
        total = per_client * (clients + 1)
        print("     %d requests from %d clients -> %d new app connections (%d peer ports; clients had to "
              "reconnect %d times)" % (n_req, clients + 1, n_conn, len(ports), reconnects[0]))
        assert n_req == total, "the app served %d requests, expected %d" % (n_req, total)
        assert n_conn <= 10, ("%d sequential requests from %d clients opened %d TCP connections to the app "
                              "(expected keep-alive reuse: at most 10)" % (total, clients + 1, n_conn))


# ---------------------------------------------------------------- failures

def test_upstream_timeout_504():
    with proxy("--upstream-timeout", _timeout_arg(500)) as f:
        c = HTTPConnection(f.port)
        t0 = time.monotonic()
        try:
            c.send(request_bytes("GET", "/slow?ms=1500"))
            r = c.response(timeout=10)
        finally:
            c.close()
        elapsed = time.monotonic() - t0
        ferry_error(r, 504, "GET /slow?ms=1500 with --upstream-timeout 500")
        assert 0.4 <= elapsed <= 1.4, "504 after %.2fs (upstream timeout 0.5s)" % elapsed
        # the late answer must not be handed to the next request
        d = seen(one(f.port, "GET", "/headers?after=504", timeout=5))
        assert d["path"] == "/headers?after=504", d
        r = one(f.port, "GET", "/slow?ms=100")
        assert r.status == 200 and r.body == b"slept 100\n", "GET /slow?ms=100 under a 500 ms timeout: %r" % r
    with proxy() as f:  # the default (30 s) leaves a 1.2 s answer alone
        r = one(f.port, "GET", "/slow?ms=1200", timeout=10)
        assert r.status == 200 and r.body == b"slept 1200\n", "GET /slow?ms=1200, default timeout: %r" % r


def test_upstream_timeout_is_for_headers_only():
    """The timeout covers the wait for the response head, not gaps in a streamed body."""
    with proxy("--upstream-timeout", _timeout_arg(500)) as f:
        c = HTTPConnection(f.port)
        try:
            c.send(request_bytes("GET", "/drip?n=3&ms=800"))
            r = c.response(timeout=10, allow_truncated=True)
        finally:
            c.close()
        assert r.status == 200 and r.complete and r.body == b"chunk 0\nchunk 1\nchunk 2\n", (
            "GET /drip?n=3&ms=800 with --upstream-timeout 500: expected the whole streamed body, got %r "
            "(complete=%s)" % (r, r.complete))


def test_unreachable_502():
    dead = free_port()
    with Ferry("--upstream", "http://127.0.0.1:%d" % dead) as f:
        for method, body in (("GET", None), ("POST", b"some body")):
            t0 = time.monotonic()
            r = one(f.port, method, "/anything", body=body, timeout=10)
            ferry_error(r, 502, "%s /anything with the app down" % method)
            assert time.monotonic() - t0 < 3, "502 took %.1fs" % (time.monotonic() - t0)
        r = one(f.port, "GET", "/ferry/healthz")
        assert r.status == 200, "/ferry/healthz with the app down: %r" % r


def test_app_closes_mid_body():
    with proxy() as f:
        c = HTTPConnection(f.port)
        try:
            c.send(request_bytes("GET", "/cut"))
            r = c.response(timeout=10, allow_truncated=True)
            assert r.status == 200 and from_app(r), r
            assert r.framing in ("length", "chunked"), (
                "GET /cut: a truncated body sent close-delimited looks complete (%r)" % r)
            if r.framing == "length":
                assert r.get("content-length") == "1000", r
            assert not r.complete and len(r.body) == 100, (
                "GET /cut (Content-Length 1000, app sends 100 then closes): client got %d bytes, framing %s, "
                "complete=%s" % (len(r.body), r.framing, r.complete))
            assert c.eof, "GET /cut: client connection not closed"
        finally:
            c.close()

        c = HTTPConnection(f.port)
        try:
            c.send(request_bytes("GET", "/cut?chunked=1"))
            r = c.response(timeout=10, allow_truncated=True)
            assert r.status == 200 and from_app(r), r
            assert r.framing == "chunked", "GET /cut?chunked=1: expected a chunked answer, got %s (%r)" % (
                r.framing, r)
            assert not r.complete and r.body == b"a" * 50 + b"b" * 50, (
                "GET /cut?chunked=1: expected 100 bytes and no last chunk, got %d bytes, complete=%s" % (
                    len(r.body), r.complete))
            assert c.eof, "GET /cut?chunked=1: client connection not closed"
        finally:
            c.close()
        seen(one(f.port, "GET", "/headers?after=cut"))


# ---------------------------------------------------------------- WebSocket tunnel

def test_websocket_tunnel():
    with proxy() as f:
        before = APP.ws_sessions

        async def go():
            async with websockets.connect(f.ws_url + "/app-ws?greet=1", open_timeout=5, close_timeout=3) as w:
                assert w.response_headers.get("X-Legacy-App") == "ws", (
                    "ws /app-ws: the 101 is not the app's: %r" % list(w.response_headers.raw_items()))
                hello = await asyncio.wait_for(w.recv(), 5)
                assert hello == "hello from app", "ws /app-ws: first message %r" % hello
                for msg in ("tunnel ok", "ü" * 1000, b"\x00\xff" * 50000):
                    await w.send(msg)
                    echo = await asyncio.wait_for(w.recv(), 5)
                    assert echo == msg, "ws /app-ws: sent %r..., got back %r..." % (msg[:20], echo[:20])
            return w.close_code

        code = run_ws(go())
        assert code == 1000, "close code %r" % code
        assert APP.ws_sessions == before + 1, "the app answered %d handshakes" % (APP.ws_sessions - before)


def test_websocket_tunnel_bytes():
    key = base64.b64encode(b"0123456789abcdef").decode()
    accept = base64.b64encode(hashlib.sha1((key + legacy_app.WS_GUID).encode()).digest()).decode()
    unmasked_before = APP.ws_unmasked
    with proxy() as f:
        c = HTTPConnection(f.port)
        try:
            c.send(request_bytes("GET", "/app-ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                          ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
            r = c.read_head(timeout=5)
            assert r.status == 101, "WebSocket upgrade to /app-ws: expected 101, got %r" % r
            assert r.get("sec-websocket-accept") == accept and r.get("x-legacy-app") == "ws", (
                "the 101 is not the app's: %r" % r)
            mask = b"\x11\x22\x33\x44"

            def masked(opcode, payload):
                n = len(payload)
                head = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else (
                    struct.pack("!BBH", 0x80 | opcode, 0xFE, n) if n < 65536 else
                    struct.pack("!BBQ", 0x80 | opcode, 0xFF, n))
                return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

            def expect(want, what):
                deadline = time.monotonic() + 5
                while len(c.buf) < len(want):
                    if not c.fill(deadline):
                        break
                got, c.buf = c.buf[:len(want)], c.buf[len(want):]
                assert got == want, "%s: expected %r..., got %r..." % (what, want[:40], got[:40])

            c.send(masked(0x1, b"tunnel ok"))
            expect(b"\x81\x09tunnel ok", "text frame echoed through the tunnel")
            big = bytes(range(256)) * 300
            c.send(masked(0x2, big))
            expect(b"\x82\x7f" + struct.pack("!Q", len(big)) + big, "76800-byte binary frame")
            c.send(masked(0x8, b"\x03\xe8"))
            expect(b"\x88\x02\x03\xe8", "close frame")
            rest = c.wait_eof(5)
            assert rest == b"", "bytes after the close frame: %r" % rest
        finally:
            c.close()
    assert APP.ws_unmasked == unmasked_before, "the app received unmasked frames: not a byte-for-byte tunnel"


# ---------------------------------------------------------------- HTTPS, forms

def test_forwarded_proto_https():
    tmp = tempfile.mkdtemp(prefix="ferry-upstream-")
    cert, key = os.path.join(tmp, "c.crt"), os.path.join(tmp, "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True, timeout=60)
    tls_port = free_port()
    with proxy("--tls-listen", "127.0.0.1:%d" % tls_port, "--tls-cert", cert, "--tls-key", key) as f:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        wait_port(tls_port, 10, "TLS listener")
        hc = http.client.HTTPSConnection("127.0.0.1", tls_port, timeout=10, context=ctx)
        try:
            hc.request("GET", "/headers?tls=1")
            resp = hc.getresponse()
            body = resp.read()
        finally:
            hc.close()
        assert resp.status == 200, (resp.status, body)
        h = {k.lower(): v for k, v in json.loads(body)["headers"]}
        assert h.get("x-forwarded-proto") == "https", "over TLS: app saw X-Forwarded-Proto %r" % h.get(
            "x-forwarded-proto")
        assert h.get("host") == "127.0.0.1:%d" % tls_port and h.get("x-forwarded-for") == "127.0.0.1", h
        h = seen(one(f.port, "GET", "/headers?plain=1"))["h"]
        assert h.get("x-forwarded-proto") == "http", h
    for p in (cert, key):
        os.unlink(p)
    os.rmdir(tmp)


def test_form_post():
    with proxy() as f:
        data = urllib.parse.urlencode({"name": "Zoë & co", "comment": "<b>hi</b>"}).encode()
        with urllib.request.urlopen(urllib.request.Request(f.url + "/form", data=data), timeout=10) as r:
            page = r.read().decode()
            assert r.status == 200, r.status
        assert "<b>name</b>=<span>Zoë &amp; co</span>" in page and "&lt;b&gt;hi&lt;/b&gt;" in page, page
        hc = http.client.HTTPConnection("127.0.0.1", f.port, timeout=10)
        try:
            hc.request("POST", "/form?redirect=1", body=data,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
            r = hc.getresponse()
            r.read()
            assert r.status == 303 and r.getheader("Location") == "/form?done=1", (
                "POST /form?redirect=1: %d %r" % (r.status, r.getheaders()))
            hc.request("GET", "/form?done=1")
            r = hc.getresponse()
            assert r.status == 200 and b"<form" in r.read(), r.status
        finally:
            hc.close()


if __name__ == "__main__":
    try:
        run([test_ferry_paths_stay_ferrys, test_no_upstream, test_methods_paths_bodies, test_client_keepalive,
             test_request_headers_forwarded, test_request_hop_by_hop_removed, test_request_upgrade_not_websocket,
             test_chunked_request_body, test_upload_streams_before_complete, test_upload_256mib_rss,
             test_download_256mib_rss, test_chunked_transfers_rss, test_drip_streams,
             test_status_and_response_headers, test_head_204_304, test_pipelined_in_order,
             test_pipelined_mixed_with_ferry_routes, test_keepalive_reuse, test_upstream_timeout_504,
             test_upstream_timeout_is_for_headers_only, test_unreachable_502, test_app_closes_mid_body,
             test_websocket_tunnel, test_websocket_tunnel_bytes, test_forwarded_proto_https, test_form_post])
    finally:
        APP.stop()
