#!/usr/bin/python3
"""test_auth.py -- tokens, private channels and the publish policy.

Tokens are minted here: HS256 with hmac/hashlib, RS256 with a key the openssl
CLI generates and signs with. Every transport is checked: WebSocket (token in
the header, the query or an auth operation), SSE, long-poll, POST send and
the publish API. Forged, tampered, expired and misaddressed tokens are
refused with 401 "invalid token: <reason>" (close 1008 on an auth operation);
channels outside the token's claims are refused (403, or an error frame that
leaves the WebSocket usable); a foreign Origin is refused even with a valid
token. A valid token works end to end on every transport.
"""
import asyncio
import atexit
import base64
import functools
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import client_id, Ferry, ID_RE, metrics, raw_http, run, SSEStream  # noqa: E402
import wsclient  # noqa: E402
from wsclient import OPEN, barrier, connect, recv_json, request, subscribe_ok  # noqa: E402

import websockets  # noqa: E402  (Debian python3-websockets 10.4)

WAIT = 5.0
SECRET = "hs256-test-secret-0123456789abcdef"
ISSUER = "https://app.example"
AUDIENCE = "ferry-test"


# ---------------------------------------------------------------- tokens

def b64u(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64u_json(obj):
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def claims(sub="alice", channels=None, publish=None, ttl=600, **extra):
    c = {"sub": sub, "iat": int(time.time()), "exp": int(time.time()) + ttl}
    if channels is not None:
        c["channels"] = channels
    if publish is not None:
        c["publish"] = publish
    c.update(extra)
    return c


def hs256(payload, secret=SECRET, header=None):
    """A compact JWS signed with HMAC-SHA256 (secret: str or bytes)."""
    if isinstance(secret, str):
        secret = secret.encode()
    signing = b64u_json(header or {"alg": "HS256", "typ": "JWT"}) + "." + b64u_json(payload)
    sig = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64u(sig)


def rs256(payload, key_file, header=None):
    """A compact JWS signed RS256 by the openssl CLI."""
    signing = b64u_json(header or {"alg": "RS256", "typ": "JWT"}) + "." + b64u_json(payload)
    out = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_file], input=signing.encode(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20, check=True)
    return signing + "." + b64u(out.stdout)


def unsigned(payload):
    """alg "none": no signature at all."""
    return b64u_json({"alg": "none", "typ": "JWT"}) + "." + b64u_json(payload) + "."


def tamper(token, payload):
    """The same header and signature around another payload."""
    h, _, s = token.split(".")
    return h + "." + b64u_json(payload) + "." + s


_KEYS = {}


def rsa_keys():
    """{"priv", "pub", "other_priv"}: two RSA key pairs made by openssl, once."""
    if not _KEYS:
        d = tempfile.mkdtemp(prefix="ferry-auth-")
        atexit.register(shutil.rmtree, d, True)
        for name in ("k1", "k2"):
            priv = os.path.join(d, name + ".pem")
            subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                            "rsa_keygen_bits:2048", "-out", priv],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=True)
            subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out",
                            os.path.join(d, name + ".pub.pem")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20, check=True)
        _KEYS.update(priv=os.path.join(d, "k1.pem"), pub=os.path.join(d, "k1.pub.pem"),
                     other_priv=os.path.join(d, "k2.pem"))
    return _KEYS


# ---------------------------------------------------------------- HTTP

def bearer(token):
    return {"Authorization": "Bearer " + token}


def q(value):
    return urllib.parse.quote(value, safe="")


def publish(f, channel, data, headers=None):
    """The publish API: (status, body bytes, headers)."""
    status, hdrs, body = raw_http(f.port, "POST", "/ferry/publish/" + channel, headers,
                                  data.encode())
    return status, body, hdrs


def publish_ok(f, channel, data, headers=None):
    status, body, _ = publish(f, channel, data, headers)
    assert status == 200, (channel, status, body)
    mid = json.loads(body)["id"]
    assert ID_RE.match(mid), mid
    return mid


def send(f, client, ops, headers=None):
    """POST /ferry/send as a browser would: (status, parsed json or None, raw)."""
    h = {"Content-Type": "text/plain;charset=UTF-8"}
    h.update(headers or {})
    body = json.dumps({"client": client_id(f.port, client), "ops": ops}).encode()
    status, _, raw = raw_http(f.port, "POST", "/ferry/send", h, body)
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return status, parsed, raw


def op(seq, channel, data):
    return {"seq": seq, "type": "publish", "channel": channel, "data": data}


def poll(f, specs, headers=None, token=None):
    """One long-poll: (status, parsed body or raw bytes). A spec is a channel
    or (channel, cursor); a first poll answers at once."""
    parts = []
    for spec in specs:
        parts.append("ch=" + (q(spec) if isinstance(spec, str) else q(spec[0]) + "," + q(spec[1])))
    if token:
        parts.append("token=" + q(token))
    status, _, raw = raw_http(f.port, "GET", "/ferry/poll?" + "&".join(parts), headers)
    return status, (json.loads(raw) if status == 200 else raw)


class SSE(SSEStream):
    """harness.SSEStream on /ferry/sse?query: events are SSEBlocks (.event, .data, .id)."""

    def __init__(self, port, query, headers=None):
        super().__init__(port, "/ferry/sse?" + query, headers, timeout=WAIT)

    def wait_subscribed(self, channel):
        while True:
            ev = self.next_event()
            if ev.event == "ferry" and json.loads(ev.data)["type"] == "subscribed":
                assert json.loads(ev.data)["channel"] == channel, ev
                return

    def next_message(self, timeout=WAIT):
        """The next event that is a message (ferry's own events skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next_event(max(0.01, deadline - time.monotonic()))
            if ev.event != "ferry":
                return ev


# ---------------------------------------------------------------- WebSocket

arun = functools.partial(wsclient.arun, timeout=60)  # the bound of a test's coroutine


async def expect_close(ws, timeout=WAIT):
    """Read until the server closes; (code, reason), frames seen before."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except websockets.ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason, frames


def ws_handshake(port, query="", headers=None):
    h = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    h.update(headers or {})
    return raw_http(port, "GET", "/ferry/ws" + query, h)


# ---------------------------------------------------------------- shared checks

def reasons(reason):
    return {"invalid token: " + r for r in ((reason,) if isinstance(reason, str) else reason)}


def assert_token_refused(f, token, reason, channel="lobby"):
    """Refused the same way on every transport and every way a token travels.
    reason: the expected reason, or a tuple of acceptable ones."""
    want = reasons(reason)
    for path in ("/ferry/sse?ch=%s&token=%s" % (channel, q(token)),
                 "/ferry/poll?ch=%s&token=%s" % (channel, q(token))):
        status, _, body = raw_http(f.port, "GET", path)
        assert status == 401 and body.decode().strip() in want, (path, status, body, want)
    for path in ("/ferry/sse?ch=" + channel, "/ferry/poll?ch=" + channel):
        status, _, body = raw_http(f.port, "GET", path, bearer(token))
        assert status == 401 and body.decode().strip() in want, (path, status, body, want)
    status, parsed, raw = send(f, "c-refused", [op(1, channel, "x")], bearer(token))
    assert status == 401 and raw.decode().strip() in want, ("send", status, raw, want)
    status, _, body = ws_handshake(f.port, "?ch=%s&token=%s" % (channel, q(token)))
    assert status == 401 and body.decode().strip() in want, ("ws query", status, body, want)
    status, _, body = ws_handshake(f.port, "?ch=" + channel, bearer(token))
    assert status == 401 and body.decode().strip() in want, ("ws header", status, body, want)

    async def auth_op():
        ws = await connect(f)
        await ws.send(json.dumps({"type": "auth", "token": token, "ref": 1}))
        code, why, frames = await expect_close(ws)
        assert code == 1008 and why in want, ("ws auth op", code, why, frames, want)
        assert not any(m["type"] == "authenticated" for m in frames), frames
    arun(auth_op())


def assert_token_accepted(f, token, sub="alice", channel="lobby"):
    """The control for assert_token_refused: the same requests succeed
    (the token needs channel in its channels and publish claims)."""
    for path in ("/ferry/sse?ch=%s&token=%s" % (channel, q(token)),
                 "/ferry/poll?ch=%s&token=%s" % (channel, q(token))):
        status, _, body = raw_http(f.port, "GET", path)
        assert status == 200, (path, status, body)
    for path in ("/ferry/sse?ch=" + channel, "/ferry/poll?ch=" + channel):
        status, _, body = raw_http(f.port, "GET", path, bearer(token))
        assert status == 200, (path, status, body)
    status, parsed, raw = send(f, "c-accepted-%d" % time.monotonic_ns(), [op(1, channel, "x")],
                               bearer(token))
    assert status == 200 and parsed == {"ack": 1}, ("send", status, raw)
    status, _, body = ws_handshake(f.port, "?ch=%s&token=%s" % (channel, q(token)))
    assert status == 101, ("ws query", status, body)
    status, _, body = ws_handshake(f.port, "?ch=" + channel, bearer(token))
    assert status == 101, ("ws header", status, body)

    async def auth_op():
        ws = await connect(f)
        r = await request(ws, {"type": "auth", "token": token, "ref": 1})
        assert r == {"type": "authenticated", "identity": sub, "ref": 1}, r
        await ws.close()
    arun(auth_op())


def end_to_end(f, token, channel, sub="alice"):
    """Subscribe to channel with token over ws (header, query and auth op),
    SSE (query and header) and long-poll, publish once, every one receives it."""
    async def main():
        ws_h = await connect(f, headers=bearer(token))
        await subscribe_ok(ws_h, channel)
        ws_q = await connect(f, "?token=%s&ch=%s" % (q(token), channel))
        r = await recv_json(ws_q)
        assert r["type"] == "subscribed" and r["channel"] == channel, r
        ws_a = await connect(f)
        r = await request(ws_a, {"type": "auth", "token": token, "ref": 7})
        assert r == {"type": "authenticated", "identity": sub, "ref": 7}, r
        await subscribe_ok(ws_a, channel, ref=8)

        sse_q = SSE(f.port, "ch=%s&token=%s" % (channel, q(token)))
        OPEN.append(sse_q.close)
        sse_h = SSE(f.port, "ch=" + channel, bearer(token))
        OPEN.append(sse_h.close)
        for s in (sse_q, sse_h):
            assert s.status == 200, s.head
            s.wait_subscribed(channel)
        status, first = poll(f, [channel], token=token)
        assert status == 200, first
        cursor = first["cursors"][channel]

        loop = asyncio.get_running_loop()
        # the poll is held until the message comes
        held = loop.run_in_executor(None, poll, f, [(channel, cursor)], bearer(token))
        await asyncio.sleep(0.2)
        mid = publish_ok(f, channel, "secret news")
        for ws in (ws_h, ws_q, ws_a):
            m = await recv_json(ws)
            assert m == {"type": "message", "channel": channel, "id": mid, "data": "secret news"}, m
        for s in (sse_q, sse_h):
            ev = await loop.run_in_executor(None, s.next_message)
            assert ev.data == "secret news" and mid in ev.id, ev
        status, body = await asyncio.wait_for(held, WAIT + 2)
        assert status == 200, body
        assert [(m["id"], m["data"]) for m in body["messages"]] == [(mid, "secret news")], body
    arun(main())


# ---------------------------------------------------------------- tests

def test_hs256_end_to_end():
    tok = hs256(claims(channels=["private-room-*"], publish=["private-room-1"]))
    with Ferry("--jwt-secret", SECRET) as f:
        end_to_end(f, tok, "private-room-1")

        # Without a token the private channel is refused, a public one is not.
        for path in ("/ferry/sse?ch=private-room-1", "/ferry/poll?ch=private-room-1"):
            status, _, body = raw_http(f.port, "GET", path)
            assert status in (401, 403), (path, status, body)
        for path in ("/ferry/sse?ch=lobby", "/ferry/poll?ch=lobby"):
            status, _, body = raw_http(f.port, "GET", path)
            assert status == 200, (path, status, body)

        async def main():
            anon = await connect(f)
            r = await request(anon, {"type": "subscribe", "channel": "private-room-1", "ref": 1})
            assert r["type"] == "error" and r["code"] == "forbidden" and r["ref"] == 1, r
            await subscribe_ok(anon, "lobby", ref=2)
            # The token's publish claim lets its holder publish over the WebSocket.
            ws = await connect(f, headers=bearer(tok))
            await subscribe_ok(ws, "private-room-1")
            await ws.send(json.dumps({"type": "publish", "channel": "private-room-1", "data": "hi",
                                      "ref": 3}))
            # its own message and the ack, in either order
            got = {m["type"]: m for m in [await recv_json(ws), await recv_json(ws)]}
            ack, m = got.get("ack"), got.get("message")
            assert ack and ack["ref"] == 3, got
            assert m and m["id"] == ack["id"] and m["data"] == "hi", got
            assert await barrier(anon) == [], "an anonymous client got a private message"
        arun(main())


def test_rs256():
    keys = rsa_keys()
    good = claims(channels=["private-*", "lobby"], publish=["lobby"])
    tok = rs256(good, keys["priv"])
    with Ferry("--jwt-public-key", keys["pub"]) as f:
        assert_token_accepted(f, tok)
        end_to_end(f, tok, "private-rsa")
        assert_token_refused(f, rs256(good, keys["other_priv"]), "bad signature")
        assert_token_refused(f, tamper(tok, claims(sub="mallory", channels=["*"], publish=["*"])),
                             "bad signature")
        # Algorithm confusion: the public key's PEM used as an HMAC secret.
        with open(keys["pub"], "rb") as kf:
            pem = kf.read()
        for secret in (pem, pem.strip()):
            assert_token_refused(f, hs256(good, secret), ("unsupported algorithm", "bad signature"))
        assert_token_refused(f, hs256(good), ("unsupported algorithm", "bad signature"))
        assert_token_refused(f, unsigned(good), ("unsupported algorithm", "malformed token"))
        assert_token_refused(f, rs256(claims(channels=["lobby"], publish=["lobby"], ttl=-3600),
                                      keys["priv"]), "token expired")

    # Both kinds configured: both are accepted.
    with Ferry("--jwt-public-key", keys["pub"], "--jwt-secret", SECRET) as f:
        assert_token_accepted(f, tok)
        assert_token_accepted(f, hs256(good))
        assert_token_refused(f, rs256(good, keys["other_priv"]), "bad signature")


def test_invalid_tokens():
    base = claims(channels=["private-*", "lobby"], publish=["lobby"], iss=ISSUER, aud=AUDIENCE)
    now = int(time.time())
    with Ferry("--jwt-secret", SECRET, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE) as f:
        assert_token_accepted(f, hs256(base))
        assert_token_accepted(f, hs256(dict(base, aud=["other", AUDIENCE])))
        cases = [
            ("wrong key", hs256(base, "not-the-secret"), "bad signature"),
            ("tampered payload", tamper(hs256(base), dict(base, sub="mallory", channels=["*"])),
             "bad signature"),
            ("alg none", unsigned(base), ("unsupported algorithm", "malformed token")),
            ("alg none, HS256 signature kept",
             b64u_json({"alg": "none"}) + "." + hs256(base).split(".", 1)[1],
             ("unsupported algorithm", "bad signature")),
            ("RS256 header, RS256 not configured",
             hs256(base, header={"alg": "RS256", "typ": "JWT"}), "unsupported algorithm"),
            ("garbage", "not-a-token", "malformed token"),
            ("two parts", hs256(base).rsplit(".", 1)[0], "malformed token"),
            ("expired", hs256(dict(base, exp=now - 3600)), "token expired"),
            ("not yet valid", hs256(dict(base, nbf=now + 3600)), "token not yet valid"),
            ("wrong issuer", hs256(dict(base, iss="https://evil.example")), "wrong issuer"),
            ("no issuer", hs256({k: v for k, v in base.items() if k != "iss"}), "wrong issuer"),
            ("wrong audience", hs256(dict(base, aud="someone-else")), "wrong audience"),
            ("no audience", hs256({k: v for k, v in base.items() if k != "aud"}), "wrong audience"),
            ("channels not an array", hs256(dict(base, channels="private-*")), "bad claims"),
            ("exp not a number", hs256(dict(base, exp="tomorrow")), "bad claims"),
        ]
        for name, token, reason in cases:
            try:
                assert_token_refused(f, token, reason)
            except AssertionError as e:
                raise AssertionError("%s: %s" % (name, e)) from None


def test_require_token():
    tok = hs256(claims(channels=["news"], publish=["news"]))
    with Ferry("--jwt-secret", SECRET, "--require-token") as f:
        for path in ("/ferry/sse?ch=news", "/ferry/poll?ch=news"):
            status, _, body = raw_http(f.port, "GET", path)
            assert status == 401, (path, status, body)
        status, _, raw = send(f, "anon", [op(1, "news", "x")])
        assert status == 401, (status, raw)
        # every channel is private now: "news" needs the claim, "other" is refused
        for path in ("/ferry/sse?ch=news", "/ferry/poll?ch=news"):
            status, _, body = raw_http(f.port, "GET", path, bearer(tok))
            assert status == 200, (path, status, body)
        for path in ("/ferry/sse?ch=other", "/ferry/poll?ch=other"):
            status, _, body = raw_http(f.port, "GET", path, bearer(tok))
            assert status == 403, (path, status, body)

        async def main():
            for first in ({"type": "subscribe", "channel": "news", "ref": 1},
                          {"type": "ping", "ref": 1},
                          {"type": "publish", "channel": "news", "data": "x", "ref": 1}):
                ws = await connect(f)
                await ws.send(json.dumps(first))
                code, why, frames = await expect_close(ws)
                assert code == 1008 and why.startswith("token required"), (first, code, why)
                assert not any(m["type"] in ("subscribed", "pong", "ack") for m in frames), frames
            # the handshake's ?ch= gives nothing away either
            ws = await connect(f, "?ch=news")
            frames = await barrier_or_close(ws)
            assert not any(m["type"] == "subscribed" for m in frames), frames

            ws = await connect(f)
            r = await request(ws, {"type": "auth", "token": tok, "ref": 1})
            assert r == {"type": "authenticated", "identity": "alice", "ref": 1}, r
            await subscribe_ok(ws, "news", ref=2)
            r = await request(ws, {"type": "subscribe", "channel": "other", "ref": 3})
            assert r["type"] == "error" and r["code"] == "forbidden" and r["ref"] == 3, r
            mid = publish_ok(f, "news", "for token holders")
            m = await recv_json(ws)
            assert m["id"] == mid, m

            ws = await connect(f)
            await ws.send(json.dumps({"type": "auth", "token": hs256(claims(), "wrong"), "ref": 1}))
            code, why, _ = await expect_close(ws)
            assert code == 1008 and why == "invalid token: bad signature", (code, why)
        arun(main())
        assert_token_refused(f, hs256(claims(channels=["news"], ttl=-3600)), "token expired",
                             channel="news")


async def barrier_or_close(ws, ref=999):
    """What arrives before the pong, or before the server closes."""
    frames = []
    try:
        await ws.send(json.dumps({"type": "ping", "ref": ref}))
        while True:
            m = await recv_json(ws)
            if m["type"] == "pong" and m.get("ref") == ref:
                break
            frames.append(m)
    except websockets.ConnectionClosed:
        pass
    return frames


def test_subscribe_outside_claims():
    tok = hs256(claims(channels=["private-a", "private-team-*"]))
    with Ferry("--jwt-secret", SECRET) as f:
        for transport in ("sse", "poll"):
            for chs in ("ch=private-b", "ch=private-a&ch=private-b", "ch=private-teamx"):
                for how in ("query", "header"):
                    path = "/ferry/%s?%s" % (transport, chs)
                    if how == "query":
                        status, _, body = raw_http(f.port, "GET", path + "&token=" + q(tok))
                    else:
                        status, _, body = raw_http(f.port, "GET", path, bearer(tok))
                    assert status == 403, (path, how, status, body)
            # control: inside the claims
            status, _, body = raw_http(f.port, "GET", "/ferry/%s?ch=private-a&ch=private-team-x"
                                       % transport, bearer(tok))
            assert status == 200, (transport, status, body)

        async def main():
            ws = await connect(f, headers=bearer(tok))
            for i, ch in enumerate(("private-b", "private-teamx", "private-")):
                r = await request(ws, {"type": "subscribe", "channel": ch, "ref": 10 + i})
                assert r["type"] == "error" and r["code"] == "forbidden" and r["ref"] == 10 + i, r
            # still usable
            r = await request(ws, {"type": "ping", "ref": 1})
            assert r == {"type": "pong", "ref": 1}, r
            await subscribe_ok(ws, "private-team-x", ref=2)
            publish_ok(f, "private-b", "not for you")
            mid = publish_ok(f, "private-team-x", "for the team")
            m = await recv_json(ws)
            assert m["id"] == mid and m["channel"] == "private-team-x", m
            assert await barrier(ws) == []

            # A ?ch= outside the claims in the handshake: refused one way or
            # another, and nothing of that channel is delivered.
            status, _, body = ws_handshake(f.port, "?ch=private-b&token=" + q(tok))
            if status == 101:
                ws2 = await connect(f, "?ch=private-b&token=" + q(tok))
                r = await recv_json(ws2)
                assert r["type"] == "error" and r["code"] == "forbidden", r
                publish_ok(f, "private-b", "still not for you")
                assert await barrier(ws2) == []
            else:
                assert status == 403, (status, body)
        arun(main())


def test_publish_outside_claims():
    tok = hs256(claims(channels=["private-*", "news", "weather"], publish=["private-a", "news"]))
    reader = hs256(claims(sub="reader", channels=["private-*"]))
    with Ferry("--jwt-secret", SECRET, "--publish-key", "k3y") as f:
        async def main():
            sub = await connect(f, headers=bearer(reader))
            for i, ch in enumerate(("private-a", "private-b", "news", "weather")):
                await subscribe_ok(sub, ch, ref=i)

            # WebSocket
            ws = await connect(f, headers=bearer(tok))
            ack = await request(ws, {"type": "publish", "channel": "private-a", "data": "a",
                                     "ref": 1})
            assert ack["type"] == "ack" and ack["ref"] == 1, ack
            ack2 = await request(ws, {"type": "publish", "channel": "news", "data": "n", "ref": 2})
            assert ack2["type"] == "ack" and ack2["ref"] == 2, ack2
            for i, ch in enumerate(("private-b", "weather")):
                r = await request(ws, {"type": "publish", "channel": ch, "data": "x", "ref": 3 + i})
                assert r["type"] == "error" and r["code"] == "forbidden" and r["ref"] == 3 + i, r
            anon = await connect(f)
            for i, ch in enumerate(("news", "private-a")):
                r = await request(anon, {"type": "publish", "channel": ch, "data": "x",
                                         "ref": 5 + i})
                assert r["type"] == "error" and r["code"] == "forbidden" and r["ref"] == 5 + i, r
            other = await connect(f, headers=bearer(reader))  # may subscribe, not publish
            r = await request(other, {"type": "publish", "channel": "private-a", "data": "x",
                                      "ref": 7})
            assert r["type"] == "error" and r["code"] == "forbidden", r
            got = await barrier(sub)
            assert [(m["channel"], m["data"]) for m in got] == [("private-a", "a"), ("news", "n")], got

            # POST send: one forbidden op and the whole batch is refused
            loop = asyncio.get_running_loop()
            for bad_ops in ([op(1, "private-a", "ok"), op(2, "private-b", "no")],
                            [op(1, "private-b", "no"), op(2, "private-a", "ok")],
                            [op(1, "news", "ok"), op(2, "weather", "no")]):
                status, parsed, raw = await loop.run_in_executor(None, send, f, "sender", bad_ops,
                                                                 bearer(tok))
                assert status == 403 and parsed and parsed["error"] == "forbidden", (bad_ops, raw)
            for anon_ops in ([op(1, "news", "x")], [op(1, "private-a", "x")]):
                status, parsed, raw = await loop.run_in_executor(None, send, f, "anon", anon_ops)
                assert status == 403 and parsed and parsed["error"] == "forbidden", (anon_ops, raw)
            assert await barrier(sub) == [], "a refused batch published something"
            status, parsed, raw = await loop.run_in_executor(
                None, send, f, "sender", [op(1, "private-a", "s1"), op(2, "news", "s2")], bearer(tok))
            assert status == 200 and parsed == {"ack": 2}, raw
            got = [await recv_json(sub) for _ in range(2)]
            assert [(m["channel"], m["data"]) for m in got] == [("private-a", "s1"), ("news", "s2")]

            # the publish API: the key, or a token whose publish claim matches
            status, body, _ = publish(f, "private-a", "x")
            assert status == 401, (status, body)
            for h in ({"X-Ferry-Key": "wrong"}, bearer("wrong"), bearer(reader),
                      bearer(hs256(claims(publish=["private-a"], ttl=-3600))),
                      bearer(hs256(claims(publish=["private-a"]), "other-secret"))):
                status, body, _ = publish(f, "private-a", "x", h)
                assert status == 403, (h, status, body)
            for ch in ("private-b", "weather"):
                status, body, _ = publish(f, ch, "x", bearer(tok))
                assert status == 403, (ch, status, body)
            assert await barrier(sub) == [], "a refused publish API call published something"
            m1 = publish_ok(f, "private-a", "by token", bearer(tok))
            m2 = publish_ok(f, "news", "by token", bearer(tok))
            m3 = publish_ok(f, "private-b", "by key", {"X-Ferry-Key": "k3y"})
            m4 = publish_ok(f, "weather", "by key", bearer("k3y"))
            got = [await recv_json(sub) for _ in range(4)]
            assert [m["id"] for m in got] == [m1, m2, m3, m4], got
        arun(main())

    # --client-publish opens the public channels to everyone, never the private ones.
    with Ferry("--jwt-secret", SECRET, "--client-publish") as f:
        async def main2():
            anon = await connect(f)
            r = await request(anon, {"type": "publish", "channel": "news", "data": "x", "ref": 1})
            assert r["type"] == "ack", r
            r = await request(anon, {"type": "publish", "channel": "private-a", "data": "x",
                                     "ref": 2})
            assert r["type"] == "error" and r["code"] == "forbidden", r
            ws = await connect(f, headers=bearer(tok))
            r = await request(ws, {"type": "publish", "channel": "private-b", "data": "x", "ref": 3})
            assert r["type"] == "error" and r["code"] == "forbidden", r
            r = await request(ws, {"type": "publish", "channel": "private-a", "data": "x", "ref": 4})
            assert r["type"] == "ack", r
        arun(main2())
        status, parsed, raw = send(f, "anon", [op(1, "news", "x"), op(2, "private-a", "y")])
        assert status == 403 and parsed["error"] == "forbidden", raw
        status, parsed, raw = send(f, "anon", [op(1, "news", "x")])
        assert status == 200 and parsed == {"ack": 1}, raw
        assert metrics(f.port)["ferry_messages_in_total"] == 3


def test_cross_origin():
    tok = hs256(claims(channels=["private-*", "lobby"], publish=["private-*", "lobby"]))
    with Ferry("--jwt-secret", SECRET, "--allow-origin", "https://app.example") as f:
        same = "http://127.0.0.1:%d" % f.port
        for origin in ("http://evil.example", "https://app.example.evil.example", "null",
                       "http://127.0.0.1:%d" % (f.port + 1 if f.port < 65535 else f.port - 1)):
            for query, headers in (("?ch=private-a&token=" + q(tok), {}),
                                   ("?ch=private-a", bearer(tok))):
                h = dict(headers, Origin=origin)
                status, _, body = ws_handshake(f.port, query, h)
                assert status == 403, ("ws", origin, status, body)
            status, parsed, raw = send(f, "x-site", [op(1, "private-a", "hijack")],
                                       dict(bearer(tok), Origin=origin))
            assert status == 403, ("send", origin, status, raw)
        assert metrics(f.port)["ferry_messages_in_total"] == 0, "a cross-origin send published"
        for origin in (same, "https://app.example"):
            status, _, body = ws_handshake(f.port, "?ch=private-a", dict(bearer(tok), Origin=origin))
            assert status == 101, ("ws", origin, status, body)
        status, parsed, raw = send(f, "same-site", [op(1, "private-a", "fine")],
                                   dict(bearer(tok), Origin=same))
        assert status == 200 and parsed == {"ack": 1}, raw
        status, parsed, raw = send(f, "allowed", [op(1, "private-a", "fine")],
                                   dict(bearer(tok), Origin="https://app.example"))
        assert status == 200 and parsed == {"ack": 1}, raw

        async def main():
            # websockets itself, as a hijacking page would connect
            try:
                ws = await connect(f, "?ch=private-a&token=" + q(tok), origin="http://evil.example")
                OPEN.append(ws.transport.abort)
                raise AssertionError("a cross-origin WebSocket was accepted")
            except websockets.InvalidStatusCode as e:
                assert e.status_code == 403, e
        arun(main())
        assert metrics(f.port)["ferry_messages_in_total"] == 2


def test_connection_ends_with_its_token():
    """A connection does not outlive its token: at exp, WebSocket close 1008
    "token expired", and an SSE stream ends; a fresh auth moves the end."""
    with Ferry("--jwt-secret", SECRET) as f:
        async def main():
            short = hs256(claims(channels=["private-a"], ttl=2))
            ws = await connect(f, "?ch=private-a", bearer(short))
            start = time.monotonic()
            code, reason, _ = await expect_close(ws, timeout=10)
            took = time.monotonic() - start
            assert (code, reason) == (1008, "token expired"), (code, reason)
            assert 0.5 < took < 8, took
            # renewed before it ran out: still open after the first exp
            ws = await connect(f, "", bearer(hs256(claims(channels=["private-a"], ttl=2))))
            r = await request(ws, {"type": "auth", "ref": 7,
                                   "token": hs256(claims(channels=["private-a"], ttl=600))})
            assert r["type"] == "authenticated", r
            await asyncio.sleep(3.5)
            assert await barrier(ws) == []
            await ws.close()
        arun(main())
        s = socket.create_connection(("127.0.0.1", f.port), timeout=10)
        tok = hs256(claims(channels=["private-a"], ttl=2))
        s.sendall(("GET /ferry/sse?ch=private-a&token=%s HTTP/1.1\r\nHost: x\r\n\r\n" % q(tok)).encode())
        start, data = time.monotonic(), b""
        while time.monotonic() - start < 10:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        assert data.startswith(b"HTTP/1.1 200"), data[:80]
        assert 0.5 < time.monotonic() - start < 8, "the stream did not end at the token's exp"


if __name__ == "__main__":
    run([test_hs256_end_to_end, test_rs256, test_invalid_tokens, test_require_token,
         test_subscribe_outside_claims, test_publish_outside_claims, test_cross_origin,
         test_connection_ends_with_its_token])
