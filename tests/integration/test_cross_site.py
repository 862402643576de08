#!/usr/bin/python3
"""test_cross_site.py -- what a page on another site, or a stranger, gets.

Each case starts its own ferryd on 127.0.0.1 and sends raw requests with the
headers a browser would send for a page elsewhere (Origin, Sec-Fetch-Site,
Referer), or that a proxy in front would add (X-Forwarded-*):

  writes   publish and send refuse a cross-site page (Origin, or no Origin
           and Sec-Fetch-Site: cross-site); without --publish-key the
           publish API takes loopback clients only, unless --publish-open
  reads    JSONP needs proof of the page's origin (Sec-Fetch-Site, Origin
           or Referer) checked against --allow-origin; a refused SSE or poll
           request never reaches the app's subscribe callback (and so its
           cookie does not); a JSONP request's cookie never does
  proxies  --public-origin and --trusted-proxy (X-Forwarded-Host/-For)
  logs     ?token= and its kind are REDACTED in the access log
  metrics  loopback clients only, or --metrics-key, or --metrics-open;
           every fallback reason ferry.js sends is counted
  negotiate  a refused origin (403, readable) or token (401) says why in
           JSON; /ferry redirects to /ferry/

A small app (stdlib ThreadingHTTPServer on a free port) answers the
subscribe callback and records each call with its Cookie.
"""
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder
from harness import Ferry, client_id, raw_http, run  # noqa: E402

EVIL = "http://evil.example"
SUBSCRIBE = "subscribe:*=/cb/sub"


class App:
    """The app behind ferry: allows every subscribe, remembers each call."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with app.lock:
                    app.calls.append({"path": self.path, "cookie": self.headers.get("Cookie"),
                                      "body": json.loads(body or b"{}")})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port


def publish(f, headers=None, channel="news", body=b"hi"):
    return raw_http(f.port, "POST", "/ferry/publish/" + channel, headers, body)[0]


# ---------------------------------------------------------------- writes

def test_publish_refuses_cross_site_pages():
    with Ferry() as f:
        assert publish(f, {"Origin": EVIL}) == 403
        assert publish(f, {"Sec-Fetch-Site": "cross-site"}) == 403
        assert publish(f, {"Origin": "null"}) == 403
        # ferry's own pages, and programs (no browser headers), may
        assert publish(f, {"Origin": "http://127.0.0.1:%d" % f.port}) == 200
        assert publish(f, {"Sec-Fetch-Site": "same-origin"}) == 200
        assert publish(f) == 200
    # a key does not make a browser's cross-site POST acceptable
    with Ferry("--publish-key", "k") as f:
        assert publish(f, {"Origin": EVIL, "Authorization": "Bearer k"}) == 403
        assert publish(f, {"Authorization": "Bearer k"}) == 200
    with Ferry("--allow-origin", EVIL) as f:
        assert publish(f, {"Origin": EVIL}) == 200


def test_allowed_origin_may_read_retry_after():
    """ferry.js honours Retry-After (a 503, a 429); on another origin the
    browser shows it only when the answer exposes it."""
    with Ferry("--allow-origin", EVIL) as f:
        status, hdrs, _ = raw_http(f.port, "GET", "/ferry/poll?ch=news", {"Origin": EVIL})
        assert status == 200, status
        assert hdrs.get("access-control-allow-origin") == EVIL, hdrs
        assert "retry-after" in hdrs.get("access-control-expose-headers", "").lower(), hdrs


def test_publish_without_key_is_loopback_only():
    # a request a proxy forwarded (X-Forwarded-For from an untrusted peer)
    # is not a local one, though the proxy is on loopback
    with Ferry() as f:
        assert publish(f, {"X-Forwarded-For": "203.0.113.9"}) == 403
        assert publish(f, {"Forwarded": "for=203.0.113.9"}) == 403
        assert publish(f) == 200
    with Ferry("--trusted-proxy", "127.0.0.1") as f:
        assert publish(f, {"X-Forwarded-For": "203.0.113.9"}) == 403
        assert publish(f, {"X-Forwarded-For": "127.0.0.1"}) == 200
    with Ferry("--publish-open") as f:
        assert publish(f, {"X-Forwarded-For": "203.0.113.9"}) == 200
        assert publish(f, {"Origin": EVIL}) == 403
    with Ferry("--publish-key", "k") as f:
        assert publish(f, {"X-Forwarded-For": "203.0.113.9", "X-Ferry-Key": "k"}) == 200


def test_send_refuses_cross_site_pages():
    with Ferry("--client-publish") as f:
        body = json.dumps({"client": client_id(f.port), "ops": [
            {"seq": 1, "type": "publish", "channel": "news", "data": "x"}]}).encode()
        for h in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"},
                  {"Sec-Fetch-Site": "same-site", "Referer": EVIL + "/page"}):
            h["Content-Type"] = "text/plain"
            status, _, text = raw_http(f.port, "POST", "/ferry/send", h, body)
            assert status == 403, (h, status, text)
        status, _, text = raw_http(f.port, "POST", "/ferry/send",
                                   {"Content-Type": "text/plain"}, body)
        assert status == 200, (status, text)


# ---------------------------------------------------------------- reads

def poll(f, query, headers=None):
    return raw_http(f.port, "GET", "/ferry/poll?" + query, headers)


def test_jsonp_needs_an_allowed_origin():
    q = "ch=news&callback=cb"
    with Ferry("--jsonp", "--poll-timeout", "100ms") as f:
        assert poll(f, q, {"Sec-Fetch-Site": "cross-site", "Referer": EVIL + "/x"})[0] == 403
        assert poll(f, q, {"Sec-Fetch-Site": "cross-site"})[0] == 403
        assert poll(f, q, {"Referer": EVIL + "/x"})[0] == 403
        assert poll(f, q)[0] == 403  # a <script> on a page with no-referrer
        own = "http://127.0.0.1:%d" % f.port
        status, hdrs, body = poll(f, q, {"Sec-Fetch-Site": "same-origin"})
        assert status == 200 and body.startswith(b"/**/cb("), (status, body)
        assert poll(f, q, {"Referer": own + "/ferry/demo"})[0] == 200
    with Ferry("--jsonp", "--poll-timeout", "100ms", "--allow-origin", EVIL) as f:
        assert poll(f, q, {"Sec-Fetch-Site": "cross-site", "Referer": EVIL + "/x"})[0] == 200
        assert poll(f, q, {"Sec-Fetch-Site": "cross-site",
                           "Referer": "http://other.example/"})[0] == 403


def test_refused_origin_never_reaches_the_app():
    with App() as app, Ferry("--upstream", app.url, "--callback", SUBSCRIBE,
                             "--poll-timeout", "100ms", "--jsonp") as f:
        cookie = {"Cookie": "session=alice"}
        for path in ("/ferry/sse?ch=news", "/ferry/poll?ch=news",
                     "/ferry/poll?ch=news&callback=cb"):
            status, _, _ = raw_http(f.port, "GET", path, dict(cookie, Origin=EVIL))
            assert status == 403, (path, status)
            status, _, _ = raw_http(f.port, "GET", path,
                                    dict(cookie, **{"Sec-Fetch-Site": "cross-site"}))
            assert status == 403, (path, status)
        assert app.calls == [], app.calls
        # allowed: asked, with the cookie
        status, _, _ = raw_http(f.port, "GET", "/ferry/poll?ch=news", cookie)
        assert status == 200
        assert [c["cookie"] for c in app.calls] == ["session=alice"], app.calls


def test_jsonp_is_anonymous():
    with App() as app, Ferry("--upstream", app.url, "--callback", SUBSCRIBE,
                             "--poll-timeout", "100ms", "--jsonp") as f:
        status, _, body = poll(f, "ch=news&callback=cb",
                               {"Cookie": "session=alice", "Sec-Fetch-Site": "same-origin"})
        assert status == 200, (status, body)
        assert len(app.calls) == 1 and app.calls[0]["cookie"] is None, app.calls
        # a private channel needs its token in the query: a cookie is no token
        status, _, _ = poll(f, "ch=private-a&callback=cb",
                            {"Cookie": "session=alice", "Sec-Fetch-Site": "same-origin"})
        assert status == 403, status  # "a token is required for this channel"


# ---------------------------------------------------------------- proxies

def ws_handshake(port, headers):
    h = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    h.update(headers)
    return raw_http(port, "GET", "/ferry/ws", h)[0]


def test_public_origin_and_trusted_proxy():
    front = "http://127.0.0.1:1"  # where a proxy serves ferry; Host names ferryd
    with Ferry() as f:
        assert ws_handshake(f.port, {"Origin": front}) == 403
        assert ws_handshake(f.port, {"Origin": "http://127.0.0.1:%d" % f.port}) == 101
        # an untrusted peer's X-Forwarded-Host is not believed
        assert ws_handshake(f.port, {"Origin": front, "X-Forwarded-Host": "127.0.0.1:1"}) == 403
    with Ferry("--public-origin", front) as f:
        assert ws_handshake(f.port, {"Origin": front}) == 101
        assert ws_handshake(f.port, {"Origin": EVIL}) == 403
        status, hdrs, _ = raw_http(f.port, "GET", "/ferry/negotiate", {"Origin": front})
        assert status == 200 and "access-control-allow-origin" not in hdrs
    with Ferry("--trusted-proxy", "127.0.0.0/8") as f:
        assert ws_handshake(f.port, {"Origin": "https://rt.example",
                                     "X-Forwarded-Host": "rt.example",
                                     "X-Forwarded-Proto": "https"}) == 101
        # the scheme the proxy reports must be the page's
        assert ws_handshake(f.port, {"Origin": "http://rt.example",
                                     "X-Forwarded-Host": "rt.example",
                                     "X-Forwarded-Proto": "https"}) == 403


def test_trusted_proxy_names_the_client_in_logs():
    with tempfile.NamedTemporaryFile(prefix="ferry-xs-", suffix=".log") as log:
        with Ferry("--trusted-proxy", "127.0.0.1", "--access-log", log.name) as f:
            raw_http(f.port, "GET", "/ferry/healthz",
                     {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
            raw_http(f.port, "GET", "/ferry/nothing-here", {"X-Forwarded-For": "203.0.113.8"})
            time.sleep(0.2)
            out = f.output()
        lines = open(log.name).read().splitlines()
        assert lines[0].startswith("203.0.113.7 - - "), lines
        assert lines[1].startswith("203.0.113.8 - - "), lines
        assert "http 203.0.113.8: 404" in out, out
    with tempfile.NamedTemporaryFile(prefix="ferry-xs-", suffix=".log") as log:
        with Ferry("--access-log", log.name) as f:
            raw_http(f.port, "GET", "/ferry/healthz", {"X-Forwarded-For": "203.0.113.7"})
            time.sleep(0.2)
        assert open(log.name).read().startswith("127.0.0.1 - - ")


# ---------------------------------------------------------------- logs

def test_secrets_are_redacted_in_logs():
    secrets = ["T0KENVALUE", "K3YVALUE", "S3CRETVALUE", "PASSVALUE", "ACCESSVALUE"]
    query = ("ch=news&token=%s&api_key=%s&client_secret=%s&password=%s&access_token=%s"
             % tuple(secrets))
    with tempfile.NamedTemporaryFile(prefix="ferry-xs-", suffix=".log") as log:
        with Ferry("--jwt-secret", "s", "--access-log", log.name, "--log-level", "debug") as f:
            raw_http(f.port, "GET", "/ferry/poll?" + query)  # 401: a bad token
            raw_http(f.port, "GET", "/ferry/sse?" + query, {"Referer": "http://x/?key=K3YVALUE"})
            raw_http(f.port, "GET", "/elsewhere?" + query)
            time.sleep(0.2)
            out = f.output()
        text = open(log.name).read()
    assert len(text.splitlines()) == 3, text
    assert "token=REDACTED&api_key=REDACTED&client_secret=REDACTED&password=REDACTED" \
           "&access_token=REDACTED" in text, text
    assert "ch=news" in text
    for s in secrets:
        assert s not in text, (s, text)
        assert s not in out, (s, out)


# ---------------------------------------------------------------- metrics

def get_metrics(f, headers=None):
    return raw_http(f.port, "GET", "/ferry/metrics", headers)[0]


def test_metrics_are_not_public():
    away = {"X-Forwarded-For": "203.0.113.9"}
    with Ferry() as f:
        assert get_metrics(f) == 200
        assert get_metrics(f, away) == 403
    with Ferry("--trusted-proxy", "127.0.0.1") as f:
        assert get_metrics(f, away) == 403
        assert get_metrics(f, {"X-Forwarded-For": "127.0.0.1"}) == 200
    with Ferry("--metrics-key", "mk") as f:
        assert get_metrics(f, away) == 401
        assert get_metrics(f, dict(away, Authorization="Bearer nope")) == 401
        assert get_metrics(f, dict(away, Authorization="Bearer mk")) == 200
    with Ferry("--metrics-open") as f:
        assert get_metrics(f, away) == 200


def test_negotiate_says_why():
    """ferry.js asks negotiate first: a refusal there is its error event's
    reason, readable by the refused page (no credentials, nothing else)."""
    with Ferry() as f:
        status, hdrs, body = raw_http(f.port, "GET", "/ferry/negotiate", {"Origin": EVIL})
        assert status == 403, status
        assert hdrs.get("access-control-allow-origin") == "*", hdrs
        assert "access-control-allow-credentials" not in hdrs
        assert json.loads(body)["error"] == "origin_not_allowed", body
        status, hdrs, body = raw_http(f.port, "GET", "/ferry/negotiate", {"Origin": "http://127.0.0.1:%d" % f.port})
        assert status == 200 and json.loads(body)["transports"] == ["websocket", "sse", "poll"], body
        # a typed /ferry goes to the demo at /ferry/
        status, hdrs, _ = raw_http(f.port, "GET", "/ferry")
        assert status == 301 and hdrs.get("location") == "/ferry/", (status, hdrs)
    with Ferry("--jwt-secret", "a-secret-of-thirty-two-bytes-ok!", "--require-token",
               "--transports", "poll,sse") as f:
        status, hdrs, body = raw_http(f.port, "GET", "/ferry/negotiate?token=nope")
        assert status == 401 and json.loads(body)["error"] == "invalid_token", (status, body)
        assert "nope" not in body.decode()
        # no token: an id all the same, and the word that a token is needed
        status, hdrs, body = raw_http(f.port, "GET", "/ferry/negotiate")
        assert status == 200 and json.loads(body)["require_token"] is True, (status, body)


def test_every_fallback_reason_is_counted():
    """ferry_fallbacks_total has each reason ferry.js sends (fb=), on every
    transport's first request; anything else is "other"."""
    reasons = ["ws_unsupported", "ws_failed", "ws_no_data", "sse_unsupported", "sse_failed",
               "sse_no_data", "sse_silent", "poll_failed", "forced"]
    with Ferry() as f:
        for r in reasons:
            raw_http(f.port, "GET", "/ferry/sse?ch=x&fb=%s" % r)
        raw_http(f.port, "GET", "/ferry/sse?ch=x&fb=made_up")
        ws_handshake_query(f.port, "/ferry/ws?fb=forced")
        _, _, body = raw_http(f.port, "GET", "/ferry/metrics")
        text = body.decode()
        for r in reasons:
            want = 2 if r == "forced" else 1
            assert 'ferry_fallbacks_total{reason="%s"} %d' % (r, want) in text, (r, text)
        assert 'ferry_fallbacks_total{reason="other"} 1' in text, text


def ws_handshake_query(port, path):
    status, _, _ = raw_http(port, "GET", path, {
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "ferry.v1"})
    return status


def test_bad_settings_refused():
    for args in (["--trusted-proxy", "10.0.0.0/33"], ["--trusted-proxy", "proxy"],
                 ["--public-origin", "example.com"], ["--public-origin", "https://a/b"]):
        f = Ferry(*args)
        try:
            f.start()
        except RuntimeError as e:
            assert "--" + args[0][2:] in str(e), e
        else:
            f.stop()
            raise AssertionError("%s accepted" % args)
        finally:
            os.unlink(f.log.name)


if __name__ == "__main__":
    run([test_allowed_origin_may_read_retry_after,
        test_publish_refuses_cross_site_pages,
        test_publish_without_key_is_loopback_only,
        test_send_refuses_cross_site_pages,
        test_jsonp_needs_an_allowed_origin,
        test_refused_origin_never_reaches_the_app,
        test_jsonp_is_anonymous,
        test_public_origin_and_trusted_proxy,
        test_trusted_proxy_names_the_client_in_logs,
        test_secrets_are_redacted_in_logs,
        test_metrics_are_not_public,
        test_negotiate_says_why,
        test_every_fallback_reason_is_counted,
        test_bad_settings_refused,
    ])
