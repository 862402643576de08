#!/usr/bin/python3
"""test_http.py -- ferryd's HTTP/1.1 core, spoken over raw sockets.

Routes, keep-alive, pipelining, HTTP/1.0 close, every request limit
(414/431/413/400/408), the idle timeout, --max-connections, the error
counters in /ferry/metrics, and that ferryd stays healthy through all of it.
"""
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Ferry, HTTPConnection, metrics, run  # noqa: E402

# Longest body we accept for an error response: "short text/plain".
SHORT_BODY = 200


class Conn(HTTPConnection):
    """harness.HTTPConnection, with response() as the tuple these tests check."""

    def __init__(self, port, timeout=5.0):
        super().__init__(port, timeout)

    def response(self, timeout=5.0):
        """Read exactly one response, which must be framed by Content-Length.
        Returns (status, headers dict with lower-case names, body)."""
        r = self.read_head(timeout)
        assert "content-length" in r.headers, "response without Content-Length: %r" % r.head
        body = b"".join(self.iter_body(r, timeout=timeout))
        assert r.complete, "connection closed inside a response body"
        return r.status, r.headers, body

    def wait_closed(self, timeout=3.0):
        """Assert the server closes the connection (EOF or reset) within timeout
        and sends nothing more."""
        rest = self.wait_eof(timeout)
        assert rest == b"", "unexpected bytes after the response: %r" % rest


def get(port, path, extra=""):
    c = Conn(port)
    try:
        c.send(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n" % (path, extra)).encode())
        return c.response()
    finally:
        c.close()


def err_count(m, kind):
    return m.get('ferry_errors_total{kind="%s"}' % kind, 0)


def assert_healthy(port):
    status, headers, body = get(port, "/ferry/healthz")
    assert status == 200, (status, body)
    assert json.loads(body)["status"] == "ok", body


def assert_error_response(c, status, timeout=3.0):
    """One error response with the given status, a short body, Connection: close,
    after which the server closes the connection."""
    got, headers, body = c.response(timeout=timeout)
    assert got == status, "expected %d, got %d %r" % (status, got, body)
    assert headers.get("connection", "").lower() == "close", headers
    assert 0 < len(body) <= SHORT_BODY, body
    assert headers.get("content-type", "").startswith("text/plain"), headers
    c.wait_closed()


# ---------------------------------------------------------------- routes

def test_routes():
    with Ferry() as f:
        status, headers, body = get(f.port, "/ferry/healthz")
        assert status == 200, status
        assert headers["content-type"].startswith("application/json"), headers
        doc = json.loads(body)
        assert doc["status"] == "ok", doc

        status, headers, body = get(f.port, "/no/such/thing")
        assert status == 404, status
        assert 0 < len(body) <= SHORT_BODY, body
        status, _, _ = get(f.port, "/ferry/no-such-route")
        assert status == 404, status

        status, headers, _ = get(f.port, "/")
        assert status == 302, status
        assert headers.get("location") == "/ferry/", headers

        status, headers, body = get(f.port, "/ferry/publish/news")
        assert status == 405, status
        assert "POST" in headers.get("allow", ""), headers
        assert len(body) <= SHORT_BODY, body
        assert_healthy(f.port)


def test_keep_alive():
    with Ferry() as f:
        c = Conn(f.port)
        try:
            c.send(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, headers, body = c.response()
            assert status == 200 and json.loads(body)["status"] == "ok", (status, body)
            assert headers.get("connection", "").lower() != "close", headers
            c.send(b"POST /ferry/publish/ka HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello")
            status, _, body = c.response()
            assert status == 200, (status, body)
            assert re.match(r"^[0-9a-f]{8}:1$", json.loads(body)["id"]), body
            c.send(b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _, _ = c.response()
            assert status == 404, status
        finally:
            c.close()


def test_pipelining():
    with Ferry() as f:
        c = Conn(f.port)
        try:
            c.send(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                   b"POST /ferry/publish/pipe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc"
                   b"GET /missing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                   b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s1, _, b1 = c.response()
            s2, _, b2 = c.response()
            s3, _, _ = c.response()
            s4, h4, _ = c.response()
            assert (s1, s2, s3, s4) == (200, 200, 404, 302), (s1, s2, s3, s4)
            assert json.loads(b1)["status"] == "ok", b1
            assert "id" in json.loads(b2), b2
            assert h4.get("location") == "/ferry/", h4
            # The connection is still usable after the pipelined batch.
            c.send(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert c.response()[0] == 200
        finally:
            c.close()


def test_http10_closes():
    with Ferry() as f:
        c = Conn(f.port)
        try:
            c.send(b"GET /ferry/healthz HTTP/1.0\r\n\r\n")
            status, _, body = c.response()
            assert status == 200, status
            assert json.loads(body)["status"] == "ok", body
            c.wait_closed(timeout=3.0)
        finally:
            c.close()


# ---------------------------------------------------------------- limits

LIMITS = ("--max-request-line", "1K", "--max-header-bytes", "2K", "--max-headers", "10",
          "--max-body", "1K")


def test_limits():
    with Ferry(*LIMITS) as f:
        before = metrics(f.port)

        # URI over --max-request-line -> 414
        c = Conn(f.port)
        c.send(b"GET /ferry/healthz?" + b"a" * 1100 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert_error_response(c, 414)
        c.close()
        # ... a URI just under it is fine.
        status, _, _ = get(f.port, "/ferry/healthz?" + "a" * 900)
        assert status == 200, status

        # Header bytes over --max-header-bytes -> 431
        c = Conn(f.port)
        c.send(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 2500 + b"\r\n\r\n")
        assert_error_response(c, 431)
        c.close()
        # ... same, spread over several headers none of which is large by itself
        c = Conn(f.port)
        c.send(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               + b"".join(b"X-H%d: %s\r\n" % (i, b"c" * 300) for i in range(9)) + b"\r\n")
        assert_error_response(c, 431)
        c.close()

        # More than --max-headers fields -> 431
        c = Conn(f.port)
        c.send(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               + b"".join(b"X-N%d: v\r\n" % i for i in range(12)) + b"\r\n")
        assert_error_response(c, 431)
        c.close()
        # ... exactly 10 is fine
        c = Conn(f.port)
        c.send(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               + b"".join(b"X-N%d: v\r\n" % i for i in range(9)) + b"\r\n")
        assert c.response()[0] == 200
        c.close()

        # Content-Length over --max-body -> 413 before any body byte is sent
        c = Conn(f.port)
        c.send(b"POST /ferry/publish/big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n")
        t0 = time.monotonic()
        assert_error_response(c, 413, timeout=3.0)
        assert time.monotonic() - t0 < 2.0, "413 took %.1fs" % (time.monotonic() - t0)
        c.close()

        # Chunked body over --max-body -> 413
        c = Conn(f.port)
        c.send(b"POST /ferry/publish/big HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(4):
                c.send(b"200\r\n" + b"x" * 0x200 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert_error_response(c, 413)
        c.close()
        # A chunked body under the limit is accepted.
        c = Conn(f.port)
        c.send(b"POST /ferry/publish/small HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        status, _, body = c.response()
        assert status == 200, (status, body)
        c.close()

        after = metrics(f.port)
        for kind, n in (("http_414", 1), ("http_431", 3), ("http_413", 2)):
            delta = err_count(after, kind) - err_count(before, kind)
            assert delta == n, "ferry_errors_total{kind=%r} went up by %d, expected %d" % (kind, delta, n)
        assert_healthy(f.port)


MALFORMED = [
    # request lines
    b"GARBAGE\r\n\r\n",
    b"GET /ferry/healthz HTTP/9.9.9\r\nHost: x\r\n\r\n",
    b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n",
    # header fields
    b"GET /ferry/healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"GET /ferry/healthz HTTP/1.1\r\nHost: x\r\nBad\x01Name: v\r\n\r\n",
    b"GET /ferry/healthz HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    b"POST /ferry/publish/a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /ferry/publish/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    # RFC 9112 5.1: whitespace between field name and colon MUST be rejected with 400
    # (a request-smuggling vector once ferry proxies to --upstream).
    b"GET /ferry/healthz HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n",
    b"GET /ferry/healthz HTTP/1.1\r\nHost: x\r\nX-Custom : v\r\n\r\n",
    # A field name must be a non-empty token.
    b"GET /ferry/healthz HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n",
]


def test_malformed_400():
    with Ferry() as f:
        before = metrics(f.port)
        wrong = []
        for bad in MALFORMED:
            c = Conn(f.port)
            try:
                c.send(bad)
                status, headers, body = c.response(timeout=3.0)
                if status != 400:
                    wrong.append("%r -> %d (expected 400)" % (bad, status))
                    continue
                assert headers.get("connection", "").lower() == "close", headers
                assert 0 < len(body) <= SHORT_BODY, body
                c.wait_closed()
            finally:
                c.close()
        after = metrics(f.port)
        assert_healthy(f.port)
        assert not wrong, "malformed requests not rejected:\n  " + "\n  ".join(wrong)
        delta = err_count(after, "http_400") - err_count(before, "http_400")
        assert delta == len(MALFORMED), "ferry_errors_total{kind=\"http_400\"} went up by %d, expected %d" % (
            delta, len(MALFORMED))


# ---------------------------------------------------------------- timeouts

def test_slowloris_header_timeout():
    with Ferry("--header-timeout", "1s") as f:
        before = metrics(f.port)
        c = Conn(f.port)
        request = b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"z" * 200
        stop = threading.Event()

        def dribble():
            for byte in request:
                if stop.is_set():
                    return
                try:
                    c.sock.send(bytes([byte]))
                except OSError:
                    return
                stop.wait(0.2)

        t = threading.Thread(target=dribble, daemon=True)
        t0 = time.monotonic()
        t.start()
        try:
            got, headers, body = c.response(timeout=5.0)
            elapsed = time.monotonic() - t0
        finally:
            stop.set()
            t.join(2)
        assert got == 408, (got, body)
        assert headers.get("connection", "").lower() == "close", headers
        assert len(body) <= SHORT_BODY, body
        assert 0.8 <= elapsed <= 3.0, "408 after %.2fs (header timeout 1s)" % elapsed
        c.wait_closed()
        c.close()
        after = metrics(f.port)
        assert err_count(after, "http_408") - err_count(before, "http_408") == 1
        assert_healthy(f.port)


def test_body_timeout():
    with Ferry("--body-timeout", "1s") as f:
        c = Conn(f.port)
        t0 = time.monotonic()
        c.send(b"POST /ferry/publish/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n" + b"d" * 10)
        assert_error_response(c, 408, timeout=5.0)
        elapsed = time.monotonic() - t0
        assert 0.8 <= elapsed <= 3.0, "408 after %.2fs (body timeout 1s)" % elapsed
        c.close()
        assert_healthy(f.port)


def test_idle_timeout():
    with Ferry("--idle-timeout", "1s") as f:
        c = Conn(f.port)
        c.send(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert c.response()[0] == 200
        t0 = time.monotonic()
        c.wait_closed(timeout=4.0)  # no bytes, just EOF
        elapsed = time.monotonic() - t0
        assert 0.7 <= elapsed <= 3.0, "idle connection closed after %.2fs (idle timeout 1s)" % elapsed
        c.close()
        assert_healthy(f.port)


# ---------------------------------------------------------------- connections

def wait_http_connections(port, n, timeout=5.0):
    """Wait until metrics report n open HTTP connections (the metrics request itself included)."""
    deadline = time.monotonic() + timeout
    while True:
        got = metrics(port).get('ferry_connections{transport="http"}')
        if got == n:
            return
        if time.monotonic() > deadline:
            raise AssertionError("ferry_connections{transport=\"http\"} is %r, expected %d" % (got, n))
        time.sleep(0.05)


def test_max_connections():
    with Ferry("--max-connections", "5") as f:
        wait_http_connections(f.port, 1)
        before = metrics(f.port)
        held = []
        try:
            for _ in range(5):
                c = Conn(f.port)
                c.send(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert c.response()[0] == 200
                held.append(c)
            sixth = Conn(f.port)
            try:
                status, _, body = sixth.response(timeout=3.0)
                assert status == 503, (status, body)
                sixth.wait_closed()
            finally:
                sixth.close()
            for c in held:  # the first five still work
                c.send(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert c.response()[0] == 200
        finally:
            for c in held:
                c.close()
        # Once they are gone, new connections are served again.
        deadline = time.monotonic() + 5
        while True:
            try:
                after = metrics(f.port)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert err_count(after, "conn_refused") - err_count(before, "conn_refused") >= 1, after
        assert_healthy(f.port)


if __name__ == "__main__":
    run([test_routes, test_keep_alive, test_pipelining, test_http10_closes, test_limits, test_malformed_400,
         test_slowloris_header_timeout, test_body_timeout, test_idle_timeout, test_max_connections])
