"""wsclient.py -- the ferry JSON protocol over python3-websockets, for tests.

connect() opens /ferry/ws on a harness.Ferry and checks its "open" frame;
request(), barrier() and subscribe_ok() are the exchanges the tests repeat.
arun() bounds a test's coroutine and then closes every connection in OPEN,
whether the test passed or not, so no client outlives its test. Every wait
is bounded.
"""
import asyncio
import json

import websockets  # Debian python3-websockets 10.4

WAIT = 5.0  # bound of any single answer from ferryd

OPEN = []  # closers of every client connection a test opened; arun() calls them


def arun(coro, timeout):
    """Run coro for at most timeout seconds, then close everything in OPEN."""
    async def guarded():
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            for close in OPEN:
                close()
            OPEN.clear()
    return asyncio.run(guarded())


async def recv_json(ws, timeout=WAIT):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def connect(f, query="", headers=None, source=None, check_open=None, **kw):
    """Open a ferry WebSocket on f, check and swallow the "open" frame.
    headers: extra handshake fields; source: the local address to connect
    from; check_open: called with the "open" frame for further checks; kw:
    more websockets.connect() options (origin, subprotocols, ...)."""
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", WAIT)
    if headers:
        kw["extra_headers"] = headers
    if source:
        kw["local_addr"] = (source, 0)
    ws = await websockets.connect(f.ws_url + "/ferry/ws" + query, max_size=None, **kw)
    OPEN.append(ws.transport.abort)
    hello = await recv_json(ws)
    assert hello["type"] == "open", hello
    if check_open:
        check_open(hello)
    return ws


async def request(ws, op):
    await ws.send(json.dumps(op))
    return await recv_json(ws)


async def barrier(ws, ref=999):
    """Everything the server sent before our ping arrives before the pong:
    return those frames."""
    await ws.send(json.dumps({"type": "ping", "ref": ref}))
    frames = []
    while True:
        m = await recv_json(ws)
        if m["type"] == "pong" and m.get("ref") == ref:
            return frames
        frames.append(m)


async def subscribe_ok(ws, channel, ref=1):
    """Subscribe; the answer must be "subscribed" to channel with our ref."""
    r = await request(ws, {"type": "subscribe", "channel": channel, "ref": ref})
    assert r["type"] == "subscribed" and r["channel"] == channel and r.get("ref") == ref, r
    return r
