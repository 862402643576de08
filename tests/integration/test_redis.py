#!/usr/bin/python3
"""test_redis.py -- ferryd's Redis backend against a real redis-server.

Single-instance tests (one ferryd from harness.Ferry, one redis-server of
their own): the key and channel layout in Redis, ferryd starting before its
Redis, and the example service (examples/echo-service, and the redis-cli
loop that examples/README.md shows). The multi-instance tests (HAProxy,
killing instances, restarting Redis) are in test_redis_topology.py, which
uses the subscriber and publisher clients defined here.

The clients reconnect the way ferry.js does: WebSocket with
?ch=NAME,CURSOR, SSE with Last-Event-ID (the URL stays the first one, as
EventSource keeps it), long-poll with the cursors of the last answer. They
record everything they receive, so a test can check "exactly once, in
order" itself.
"""
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import client_id, dechunk, EventStreamParser, Ferry, free_port, ID_RE, parse_head, run, signed_client_id  # noqa: E402

import websockets  # noqa: E402  (Debian python3-websockets 10.4)

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = os.environ.get("REDIS_CLI") or shutil.which("redis-cli") or "/usr/bin/redis-cli"
WAIT = 10.0


def require(*programs):
    """Fail at once, saying what to install, when a program is missing."""
    missing = [p for p in programs if not (os.path.isabs(p) and os.access(p, os.X_OK)) and not shutil.which(p)]
    if missing:
        sys.exit("missing %s: scripts/install-deps --test installs them (Debian: redis-server redis-tools "
                 "haproxy jq)" % ", ".join(missing))


def echo_service_path():
    if os.environ.get("FERRY_ECHO_SERVICE"):
        return os.environ["FERRY_ECHO_SERVICE"]
    ferryd = os.environ.get("FERRYD") or os.path.join(TOP, "ferryd")
    beside = os.path.join(os.path.dirname(os.path.abspath(ferryd)), "examples", "echo-service")
    return beside if os.path.exists(beside) else os.path.join(TOP, "examples", "echo-service")


def split_id(mid):
    m = ID_RE.match(mid or "")
    assert m, "not an id: %r" % (mid,)
    return m.group(1), int(m.group(2))


def wait_until(what, ok, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(interval)
    raise AssertionError("%s: not within %ss" % (what, timeout))


# ---------------------------------------------------------------- Redis

class RedisServer:
    """A redis-server of the test's own on 127.0.0.1 (by default a free port)."""

    def __init__(self, port=None, persistent=False):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="ferry-redis-")
        self.persistent = persistent
        self.proc = None

    def start(self, timeout=10.0):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--daemonize", "no", "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited:\n" + open(os.path.join(self.dir, "redis.log")).read())
            try:
                return self.command("PING") == "PONG"
            except OSError:
                return False
        wait_until("redis-server answers PING", up, timeout)
        return self

    def stop(self, timeout=10.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def command(self, *args, timeout=3.0):
        return resp_command(self.port, *args, timeout=timeout)

    def cli(self, *args, timeout=10.0):
        """redis-cli, as an operator would type it; returns stdout."""
        out = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port)] + list(args),
                             capture_output=True, timeout=timeout, check=True)
        return out.stdout.decode()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False


def resp_encode(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise ValueError("bad RESP line %r" % line)


class RedisError(Exception):
    pass


def resp_command(port, *args, timeout=3.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(resp_encode(*args))
        return resp_read(s.makefile("rb"))


class RedisSubscriber:
    """A raw SUBSCRIBE/PSUBSCRIBE connection (what a backend service sees)."""

    def __init__(self, port, verb, *channels, timeout=WAIT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")
        self.sock.sendall(resp_encode(verb, *channels))
        for _ in channels:
            r = resp_read(self.f)
            assert isinstance(r, list) and r[0] == verb.lower(), r

    def next(self):
        return resp_read(self.f)

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- HTTP

async def http(port, method, path, body=b"", headers=None, timeout=WAIT):
    """One request on its own connection (Connection: close).
    Returns (status, {lower-case header: value}, body bytes)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        if isinstance(body, str):
            body = body.encode()
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n" % (method, path, port)
        if method != "GET" or body:
            head += "Content-Length: %d\r\n" % len(body)
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return parse_response(raw)


def parse_response(raw):
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError("incomplete HTTP response: %r" % raw[:200])
    r = parse_head(head)
    if r.headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    return r.status, r.headers, body


def auth(key):
    return {"Authorization": "Bearer " + key} if key else {}


async def wait_healthz(ports, status, timeout, what):
    """Until /ferry/healthz answers status on every port; after timeout
    seconds, fail with "healthz <what>: <the statuses last seen>"."""
    deadline = time.monotonic() + timeout
    while True:
        codes = [(await http(p, "GET", "/ferry/healthz"))[0] for p in ports]
        if codes == [status] * len(ports):
            return
        assert time.monotonic() < deadline, "healthz %s: %r" % (what, codes)
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------- publishers

class Published:
    """What the publishers tried and what came of it."""

    def __init__(self):
        self.ok = []      # (data, id or None, publisher) acknowledged, in ack order
        self.failed = []  # (data, status or error, publisher)

    def ok_data(self):
        return [d for d, _, _ in self.ok]


async def api_publish(port, channel, data, key=None, event=None, timeout=WAIT):
    """POST /ferry/publish/CHANNEL; returns (status, id or None)."""
    path = "/ferry/publish/" + channel + ("?event=" + event if event else "")
    status, _, body = await http(port, "POST", path, data, auth(key), timeout)
    mid = json.loads(body)["id"] if status == 200 else None
    return status, mid


class WsPublisher:
    """Publishes with {"type":"publish"} over one WebSocket and waits for each ack."""

    def __init__(self, port):
        self.port = port
        self.ws = None
        self.ref = 0

    async def open(self):
        self.ws = await websockets.connect("ws://127.0.0.1:%d/ferry/ws" % self.port, open_timeout=WAIT,
                                           ping_interval=None)
        first = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
        assert first["type"] == "open", first
        return self

    async def publish(self, channel, data, timeout=WAIT):
        """Returns ("ack", id) or ("error", code)."""
        self.ref += 1
        ref = self.ref
        await self.ws.send(json.dumps({"type": "publish", "channel": channel, "data": data, "ref": ref}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no answer to WebSocket publish ref %d" % ref)
            m = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            if m.get("ref") != ref:
                continue
            if m["type"] == "ack":
                assert m["channel"] == channel, m
                return "ack", m["id"]
            assert m["type"] == "error", m
            return "error", m["code"]

    async def close(self):
        if self.ws:
            await self.ws.close()


class SendPublisher:
    """POST /ferry/send as ferry.js does: numbered ops, one batch at a time."""

    def __init__(self, port, client=None):
        self.port = port
        self.client = client_id(port, client or "send" + secrets.token_hex(8))
        self.seq = 0

    async def publish(self, channel, data, timeout=WAIT):
        """Returns (status, ack)."""
        self.seq += 1
        return await self.send([{"seq": self.seq, "type": "publish", "channel": channel, "data": data}],
                               timeout)

    async def send(self, ops, timeout=WAIT):
        body = json.dumps({"client": self.client, "ops": ops})
        status, _, text = await http(self.port, "POST", "/ferry/send", body,
                                     {"Content-Type": "text/plain"}, timeout)
        return status, (json.loads(text).get("ack") if status == 200 else text)


# ---------------------------------------------------------------- subscribers

class Sub:
    """A subscriber to one channel that reconnects like ferry.js.

    port: where it connects first; fallback: where it reconnects (HAProxy),
    None = the same port. cursor: the id to start after (None: from now).
    received: [(id, event, data)] in arrival order, duplicates included.
    """

    transport = None

    def __init__(self, name, port, channel, cursor=None, fallback=None, max_connects=60):
        self.name = name
        self.port = port
        self.fallback = fallback or port
        self.channel = channel
        self.cursor = cursor
        self.first_cursor = cursor
        self.received = []
        self.resets = []
        self.errors = []
        self.connects = 0
        self.max_connects = max_connects
        self.subscribed = asyncio.Event()
        self.changed = asyncio.Event()
        self.task = None

    def start(self):
        self.task = asyncio.ensure_future(self.run())
        return self

    async def run(self):
        attempt = 0
        port = self.port
        while self.connects < self.max_connects:
            self.connects += 1
            try:
                await self.session(port)
                self.errors.append("%s: connection ended" % port)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 -- any failure means: reconnect
                self.errors.append("%s: %s: %s" % (port, type(e).__name__, e))
            # ferry.js: back off a little (jittered), then go to the balancer
            port = self.fallback
            attempt = attempt + 1 if not self.received_since_connect else 1
            await asyncio.sleep(random.uniform(0.05, min(1.0, 0.1 * 2 ** attempt)))
        self.errors.append("gave up after %d connects" % self.connects)

    def got(self, mid, event, data):
        self.received.append((mid, event, data))
        self.received_since_connect = True
        self.cursor = mid
        self.changed.set()

    async def wait_count(self, n, timeout):
        deadline = time.monotonic() + timeout
        while len(self.received) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s got %d of %d messages in %ss; errors: %s; resets: %s"
                                     % (self.name, len(self.received), n, timeout, self.errors[-5:], self.resets))
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def stop(self):
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    received_since_connect = False


class WsSub(Sub):
    transport = "websocket"

    async def session(self, port):
        self.received_since_connect = False
        spec = self.channel + ("," + self.cursor if self.cursor else "")
        url = "ws://127.0.0.1:%d/ferry/ws?ch=%s" % (port, urllib.parse.quote(spec, safe=",:"))
        async with websockets.connect(url, open_timeout=WAIT, close_timeout=2,
                                      subprotocols=["ferry.v1"]) as ws:
            async for raw in ws:
                m = json.loads(raw)
                t = m["type"]
                if t == "subscribed":
                    self.subscribed.set()
                elif t == "reset":
                    self.resets.append(m)
                elif t == "message":
                    assert m["channel"] == self.channel, m
                    self.got(m["id"], m.get("event"), m["data"])
                elif t == "error":
                    self.errors.append("error frame: %r" % m)


class SseSub(Sub):
    """A raw streaming reader of text/event-stream (what EventSource does)."""

    transport = "sse"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.last_event_id = None

    async def session(self, port):
        self.received_since_connect = False
        spec = self.channel + ("," + self.first_cursor if self.first_cursor else "")
        path = "/ferry/sse?ch=" + urllib.parse.quote(spec, safe=",:")
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
        try:
            head = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n"
                    "Cache-Control: no-cache\r\n" % (path, port))
            if self.last_event_id:
                head += "Last-Event-ID: %s\r\n" % self.last_event_id
            writer.write(head.encode() + b"\r\n")
            await writer.drain()
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            status, headers, _ = parse_response(raw)
            if status != 200:
                raise ConnectionError("SSE answered %d" % status)
            assert headers.get("content-type", "").startswith("text/event-stream"), headers
            chunked = headers.get("transfer-encoding", "").lower() == "chunked"
            await self.read_events(reader, chunked)
        finally:
            writer.close()

    async def read_events(self, reader, chunked):
        parser = EventStreamParser()

        async def more():
            if not chunked:
                return await asyncio.wait_for(reader.read(65536), 60)
            size = int((await asyncio.wait_for(reader.readline(), 60)).split(b";")[0], 16)
            if size == 0:
                return b""
            data = await asyncio.wait_for(reader.readexactly(size + 2), 60)
            return data[:-2]

        while True:
            chunk = await more()
            if not chunk:
                return
            for block in parser.feed(chunk):
                self.dispatch(block)

    def dispatch(self, block):
        if block.id is not None:
            self.last_event_id = block.id
        if block.data is None:
            return
        if block.event == "ferry":
            m = block.control()
            if m["type"] == "subscribed":
                self.subscribed.set()
            elif m["type"] == "reset":
                self.resets.append(m)
            return
        # "id: news,<id>": this stream's cursor of each channel
        cursors = dict(part.split(",", 1) for part in block.id.split(" ")) if block.id is not None else {}
        assert self.channel in cursors, block.lines
        self.got(cursors[self.channel], block.event, block.data)


class PollSub(Sub):
    """Long-polls in a loop, each request carrying the cursor of the last answer."""

    transport = "poll"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        # the instances of a topology share TEST_CLIENT_ID_SECRET
        self.client = signed_client_id("p" + secrets.token_hex(12))
        self.polls = 0

    async def session(self, port):
        self.received_since_connect = False
        failures = 0
        while True:
            spec = self.channel + ("," + self.cursor if self.cursor else "")
            path = "/ferry/poll?ch=%s&client=%s&t=%d" % (urllib.parse.quote(spec, safe=",:"), self.client,
                                                         self.polls)
            self.polls += 1
            self.subscribed.set()  # a held poll is subscribed; nothing shows it sooner
            status, _, body = await http(port, "GET", path, timeout=60)
            if status != 200:
                # 503 (drain, Redis away, no instance up): back off, same cursors
                failures += 1
                self.errors.append("%s: poll answered %d" % (port, status))
                if failures > 3:
                    raise ConnectionError("poll failed %d times" % failures)
                await asyncio.sleep(random.uniform(0.05, 0.2 * failures))
                continue
            failures = 0
            r = json.loads(body)
            self.resets.extend(r.get("resets") or [])
            for m in r["messages"]:
                assert m["channel"] == self.channel, m
                self.got(m["id"], m.get("event"), m["data"])
            self.cursor = r["cursors"][self.channel]


SUBS = {"websocket": WsSub, "sse": SseSub, "poll": PollSub}


def describe_seqs(seqs, first):
    """Where a list of sequence numbers departs from first, first+1, ..."""
    out, want = [], first
    for i, n in enumerate(seqs):
        if n > want:
            out.append("missing %d..%d (after position %d)" % (want, n - 1, i))
        elif n < want:
            out.append("%d again or out of order (position %d)" % (n, i))
        want = max(want, n + 1)
    return "; ".join(out) + "; got %d ids, %d..%d" % (len(seqs), seqs[0], seqs[-1]) if seqs else "none"


def check_stream(subs, published, first_seq, epoch, forbidden=(), maybe=()):
    """Every subscriber got exactly the acknowledged messages, once each, in
    id order with no gap, all in the same order; nothing from forbidden.
    Messages in maybe (a publish whose outcome is unknown) may be there, at
    most once, and then for every subscriber alike."""
    want = sorted(published.ok_data())
    by_id = {mid: d for d, mid, _ in published.ok if mid}
    reference = None
    for s in subs:
        ids = [mid for mid, _, _ in s.received]
        datas = [d for _, _, d in s.received]
        assert not s.resets, "%s: resets %r" % (s.name, s.resets)
        seqs = []
        for mid in ids:
            e, n = split_id(mid)
            assert e == epoch, "%s: id %s is not of epoch %s" % (s.name, mid, epoch)
            seqs.append(n)
        dup = sorted({x for x in datas if datas.count(x) > 1})
        assert not dup, "%s (%s) got duplicates: %r" % (s.name, s.transport, dup[:10])
        assert seqs == list(range(first_seq, first_seq + len(seqs))), \
            "%s (%s): ids not contiguous from %d: %s" % (s.name, s.transport, first_seq, describe_seqs(seqs, first_seq))
        bad = [d for d in datas if d in forbidden]
        assert not bad, "%s got messages whose publish failed: %r" % (s.name, bad)
        core = sorted(d for d in datas if d not in maybe)
        assert core == want, "%s (%s): missing %r, extra %r" % (
            s.name, s.transport, sorted(set(want) - set(datas))[:10], sorted(set(core) - set(want))[:10])
        for mid, _, d in s.received:
            if mid in by_id:
                assert by_id[mid] == d, "%s: %s carries %r, was acknowledged for %r" % (s.name, mid, d, by_id[mid])
        if reference is None:
            reference = s.received
        assert [(m, d) for m, _, d in s.received] == [(m, d) for m, _, d in reference], \
            "%s and %s saw different orders" % (s.name, subs[0].name)
    # each publisher's messages arrive in the order it published them
    order = {d: i for i, (_, _, d) in enumerate(reference or [])}
    for who in {p for _, _, p in published.ok}:
        seq = [order[d] for d, _, p in published.ok if p == who]
        assert seq == sorted(seq), "%s's messages arrived out of order" % who


# ---------------------------------------------------------------- tests

def test_key_layout():
    """ferry:{CH}:stream and ferry:{CH}:epoch with TTLs, the stream capped at
    --history-size, ferry:{CH}:pub while subscribed, ferry:in:CH for services."""
    with RedisServer() as r, Ferry("--redis", r.url, "--history-size", "10", "--history-age", "0", "--history-ttl", "60s",
                                   "--client-publish") as f:
        async def main():
            ids = []
            for i in range(25):
                status, mid = await api_publish(f.port, "news", "m%d" % i)
                assert status == 200, status
                ids.append(mid)
            epoch = split_id(ids[0])[0]
            assert [split_id(m) for m in ids] == [(epoch, n) for n in range(1, 26)], ids

            keys = sorted(r.cli("--scan").split())
            assert keys == ["ferry:{news}:epoch", "ferry:{news}:stream"], keys
            for k in keys:
                pttl = int(r.cli("PTTL", k))
                assert 0 < pttl <= 60000, (k, pttl)
            assert r.command("GET", "ferry:{news}:epoch") == epoch
            assert r.command("XLEN", "ferry:{news}:stream") == 10
            entries = r.command("XRANGE", "ferry:{news}:stream", "-", "+")
            assert [e[0] for e in entries] == ["0-%d" % n for n in range(16, 26)], entries
            assert entries[0][1][:5] == ["e", "", "d", "m15", "t"], entries[0]

            # while a client watches the channel, ferryd is subscribed to its pub/sub
            # channel; a client publish is also announced on ferry:in:news
            inbound = RedisSubscriber(r.port, "SUBSCRIBE", "ferry:in:news")
            try:
                async with websockets.connect(f.ws_url + "/ferry/ws?ch=news," + ids[-1], open_timeout=WAIT) as ws:
                    assert json.loads(await ws.recv())["type"] == "open"
                    assert json.loads(await ws.recv())["type"] == "subscribed"
                    assert r.command("PUBSUB", "CHANNELS", "ferry:{*}:pub") == ["ferry:{news}:pub"]
                    await ws.send(json.dumps({"type": "publish", "channel": "news", "data": "from a client",
                                              "event": "chat", "ref": 7}))
                    got = {}
                    while len(got) < 2:
                        m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                        got[m["type"]] = m
                    assert got["ack"]["id"] == epoch + ":26", got
                    assert got["message"]["data"] == "from a client" and got["message"]["event"] == "chat"
                kind, chan, payload = await asyncio.get_running_loop().run_in_executor(None, inbound.next)
                assert (kind, chan) == ("message", "ferry:in:news")
                ann = json.loads(payload)
                assert ann["id"] == epoch + ":26" and ann["data"] == "from a client", ann
                assert ann["event"] == "chat" and ann["sender"], ann
            finally:
                inbound.close()
            # API publishes are not announced to services; the cap still holds
            assert r.command("XLEN", "ferry:{news}:stream") == 10
            wait_until("ferryd unsubscribes once its last watcher left",
                       lambda: r.command("PUBSUB", "CHANNELS", "ferry:{*}:pub") == [], WAIT)

            # a second channel gets keys of its own, hash-tagged by its name
            assert (await api_publish(f.port, "a:b/c", "x"))[0] == 200
            keys = sorted(r.cli("--scan").split())
            assert keys == ["ferry:{a:b/c}:epoch", "ferry:{a:b/c}:stream", "ferry:{news}:epoch",
                            "ferry:{news}:stream"], keys
        asyncio.run(main())


def test_history_replay_and_trim():
    """Cursors resume from Redis's stream; a cursor trimmed away resets."""
    with RedisServer() as r, Ferry("--redis", r.url, "--history-size", "5", "--history-age", "0") as f:
        async def main():
            ids = [(await api_publish(f.port, "h", "m%d" % i))[1] for i in range(8)]
            status, _, body = await http(f.port, "GET", "/ferry/poll?ch=h," + ids[4])
            assert status == 200, status
            msgs = json.loads(body)["messages"]
            assert [m["data"] for m in msgs] == ["m5", "m6", "m7"], msgs
            status, _, body = await http(f.port, "GET", "/ferry/poll?ch=h," + ids[0])
            r2 = json.loads(body)
            assert r2["resets"] == [{"channel": "h", "reason": "too_old"}], r2
            assert [m["data"] for m in r2["messages"]] == ["m3", "m4", "m5", "m6", "m7"], r2
        asyncio.run(main())


def test_redis_unreachable_at_start():
    """ferryd starts without its Redis: healthz 503, publish 503; a subscriber
    waits; once Redis is up, healthz turns 200 and everything works."""
    port = free_port()
    with Ferry("--redis", "redis://127.0.0.1:%d/0" % port) as f:
        async def main():
            status, _, body = await http(f.port, "GET", "/ferry/healthz")
            assert status == 503, (status, body)
            h = json.loads(body)
            assert h["backend"] == "redis" and h["backend_healthy"] is False, h
            assert await api_publish(f.port, "late", "lost") == (503, None)

            ws = await websockets.connect(f.ws_url + "/ferry/ws?ch=late", open_timeout=WAIT)
            assert json.loads(await ws.recv())["type"] == "open"
            r = RedisServer(port=port)
            try:
                r.start()
                await wait_healthz([f.port], 200, 15, "not 200 within 15s of Redis starting")
                # the waiting subscriber is now subscribed
                m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                assert m["type"] == "subscribed" and m["channel"] == "late", m
                status, mid = await api_publish(f.port, "late", "hello")
                assert status == 200, status
                m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                assert (m["type"], m["id"], m["data"]) == ("message", mid, "hello"), m
                assert r.command("XLEN", "ferry:{late}:stream") == 1
                await ws.close()
            finally:
                r.stop()
                shutil.rmtree(r.dir, ignore_errors=True)
        asyncio.run(main())


async def next_messages(ws, n):
    """The next n "message" frames on ws (other frames skipped)."""
    out = []
    while len(out) < n:
        m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if m["type"] == "message":
            out.append(m)
    return out


def test_redis_loses_its_data():
    """Redis restarts empty (no persistence): the channel gets a new epoch.
    A client that stayed connected must not silently lose the new messages:
    it is told (reset "epoch") and receives them."""
    port = free_port()
    r = RedisServer(port=port)
    try:
        r.start()
        with Ferry("--redis", r.url) as f:
            async def main():
                old = [(await api_publish(f.port, "vol", "old-%d" % i))[1] for i in range(5)]
                async with websockets.connect(f.ws_url + "/ferry/ws?ch=vol," + old[0], open_timeout=WAIT) as ws:
                    await next_messages(ws, 4)  # the replay of old-1 to old-4
                    r.stop()
                    shutil.rmtree(r.dir, ignore_errors=True)
                    os.makedirs(r.dir)
                    r.start()
                    await wait_healthz([f.port], 200, 15, "not 200 again")
                    new = []
                    for i in range(3):
                        status, mid = await api_publish(f.port, "vol", "new-%d" % i)
                        assert status == 200, status
                        new.append(mid)
                    assert split_id(new[0])[0] != split_id(old[0])[0], (old, new)
                    got, resets = [], []
                    deadline = time.monotonic() + WAIT
                    while len(got) < 3 and time.monotonic() < deadline:
                        try:
                            m = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
                        except asyncio.TimeoutError:
                            break
                        if m["type"] == "message":
                            got.append((m["id"], m["data"]))
                        elif m["type"] == "reset":
                            resets.append(m)
                    assert got == list(zip(new, ["new-0", "new-1", "new-2"])), \
                        "after Redis lost the channel, the connected client got %r (resets %r)" % (got, resets)
            asyncio.run(main())
    finally:
        r.stop()
        shutil.rmtree(r.dir, ignore_errors=True)


def test_channel_expires_while_watched():
    """A watched channel idle for longer than --history-ttl: its keys expire
    and the next publish starts a new epoch at seq 1. The connected client
    must still receive it (after a reset "epoch"), not drop it as old."""
    with RedisServer() as r, Ferry("--redis", r.url, "--history-ttl", "1s") as f:
        async def main():
            old = [(await api_publish(f.port, "idle", "old-%d" % i))[1] for i in range(5)]
            async with websockets.connect(f.ws_url + "/ferry/ws?ch=idle," + old[1], open_timeout=WAIT) as ws:
                seen = [m["id"] for m in await next_messages(ws, 3)]
                assert seen == old[2:], seen
                wait_until("the idle channel's keys expire", lambda: r.command("EXISTS", "ferry:{idle}:stream",
                                                                               "ferry:{idle}:epoch") == 0, 10)
                status, mid = await api_publish(f.port, "idle", "after the pause")
                assert status == 200 and split_id(mid)[0] != split_id(old[0])[0], (status, mid, old)
                got = []
                try:
                    while not got:
                        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                        if m["type"] in ("message", "reset"):
                            got.append(m)
                except asyncio.TimeoutError:
                    pass
                assert [m for m in got if m["type"] == "message"] or [m for m in got if m["type"] == "reset"], \
                    "the connected client got nothing of %s (published after its channel expired)" % mid
                while got[-1]["type"] != "message":
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
                assert (got[-1]["id"], got[-1]["data"]) == (mid, "after the pause"), got
        asyncio.run(main())


def start_echo_service(redis, *args):
    log = tempfile.NamedTemporaryFile(prefix="echo-service-", suffix=".log", delete=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env["FERRY_REDIS"] = redis.url
    p = subprocess.Popen([echo_service_path()] + list(args), stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, env=env)
    wait_until("echo-service PSUBSCRIBEs", lambda: p.poll() is None and redis.command("PUBSUB", "NUMPAT") >= 1,
               WAIT)
    return p, log.name


def stop_echo_service(p, log):
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=WAIT)
    out = open(log, errors="replace").read()
    os.unlink(log)
    assert rc == 0, "echo-service exited %r:\n%s" % (rc, out)
    assert "AddressSanitizer" not in out and "runtime error" not in out, out
    return out


async def expect_reply(ws, channel, data, timeout=WAIT):
    """After a client publish: the ack, the message itself, then the service's reply."""
    seen = {}
    deadline = time.monotonic() + timeout
    while "reply" not in seen:
        m = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if m["type"] == "message" and m["data"] == data:
            seen["own"] = m
        elif m["type"] == "message" and m.get("event") == "reply":
            assert "own" in seen, "reply before the message it answers: %r" % m
            assert m["data"] == "echo: " + data and m["channel"] == channel, m
            seen["reply"] = m
    e1, n1 = split_id(seen["own"]["id"])
    e2, n2 = split_id(seen["reply"]["id"])
    assert e1 == e2 and n2 > n1, seen
    return seen["reply"]


def test_echo_service():
    """examples/echo-service answers a client's message on the same channel."""
    with RedisServer() as r, Ferry("--redis", r.url, "--client-publish", "--history-size", "50") as f:
        p, log = start_echo_service(r, "--history-size", "50", "--history-ttl", "300s")

        async def main():
            async with websockets.connect(f.ws_url + "/ferry/ws?ch=echo", open_timeout=WAIT) as ws:
                assert json.loads(await ws.recv())["type"] == "open"
                assert json.loads(await ws.recv())["type"] == "subscribed"
                await ws.send(json.dumps({"type": "publish", "channel": "echo", "data": "hello, service", "ref": 1}))
                reply = await expect_reply(ws, "echo", "hello, service")
                # the reply is a message like any other: kept in the channel's history
                status, _, body = await http(f.port, "GET", "/ferry/poll?ch=echo,%s:0" % split_id(reply["id"])[0])
                assert [m["data"] for m in json.loads(body)["messages"]] == ["hello, service", "echo: hello, service"]
                # multi-line and non-ASCII data survive the JSON round trip
                await ws.send(json.dumps({"type": "publish", "channel": "echo", "data": "a\nb \u00e9 \"q\" /", "ref": 2}))
                await expect_reply(ws, "echo", "a\nb \u00e9 \"q\" /")
                # POST /ferry/send publishes are announced too
                sp = SendPublisher(f.port)
                assert await sp.publish("echo", "via send") == (200, 1)
                await expect_reply(ws, "echo", "via send")
            # the reply honours --history-size and --history-ttl like ferryd's own messages
            assert 0 < int(r.cli("PTTL", "ferry:{echo}:stream")) <= 300000
        try:
            asyncio.run(main())
        finally:
            out = stop_echo_service(p, log)
        assert "replied on echo" in out, out


def readme_block(marker):
    """The ```sh block after '<!-- test: MARKER -->' in examples/README.md."""
    text = open(os.path.join(TOP, "examples", "README.md")).read()
    at = text.index("<!-- test: %s -->" % marker)
    start = text.index("```sh\n", at) + len("```sh\n")
    return text[start:text.index("```", start)]


def test_readme_redis_cli():
    """examples/README.md's redis-cli commands do what it says: the echo loop
    answers a client, and a one-off FCALL reaches the channel's subscribers."""
    with RedisServer() as r, Ferry("--redis", r.url, "--client-publish") as f:
        env = dict(os.environ, REDIS_HOST="127.0.0.1", REDIS_PORT=str(r.port))
        loop = subprocess.Popen(["bash", "-c", readme_block("echo-loop")], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until("the README's loop PSUBSCRIBEs", lambda: r.command("PUBSUB", "NUMPAT") >= 1, WAIT)

            async def main():
                async with websockets.connect(f.ws_url + "/ferry/ws?ch=echo&ch=news", open_timeout=WAIT) as ws:
                    assert json.loads(await ws.recv())["type"] == "open"
                    assert json.loads(await ws.recv())["type"] == "subscribed"
                    assert json.loads(await ws.recv())["type"] == "subscribed"
                    await ws.send(json.dumps({"type": "publish", "channel": "echo", "data": "hi there", "ref": 1}))
                    await expect_reply(ws, "echo", "hi there")
                    # the one-off publish
                    out = subprocess.run(["bash", "-c", readme_block("publish")], env=env, capture_output=True,
                                         timeout=WAIT)
                    assert out.returncode == 0, out
                    mid = out.stdout.decode().strip().splitlines()[-1]
                    split_id(mid)
                    while True:
                        m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                        if m["type"] == "message" and m["channel"] == "news" and m["id"] == mid:
                            break
                    assert m["data"] == "Hello from redis-cli" and m["event"] == "notice", m
            asyncio.run(main())
        finally:
            os.killpg(loop.pid, signal.SIGTERM)  # the README loop's own process group
            loop.wait(timeout=WAIT)


def test_send_is_idempotent_across_instances():
    """A POST send retried on another instance publishes nothing twice: the
    client's operation numbers live in Redis (ferry:{CH}:sent)."""
    import urllib.request

    def send(port, ops):
        body = json.dumps({"client": roamer, "ops": ops}).encode()
        req = urllib.request.Request("http://127.0.0.1:%d/ferry/send" % port, data=body, method="POST",
                                     headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            return json.loads(r.read())

    def op(seq, ch, data):
        return {"seq": seq, "type": "publish", "channel": ch, "data": data}

    # instances behind one load balancer share the key of client ids
    with RedisServer() as r, Ferry("--redis", r.url, "--client-publish", "--client-id-secret", "lb") as a, \
            Ferry("--redis", r.url, "--client-publish", "--client-id-secret", "lb") as b:
        roamer = client_id(a.port, "roamer")
        batch = [op(1, "chat", "a"), op(2, "other", "b"), op(3, "chat", "c")]
        assert send(a.port, batch) == {"ack": 3}
        assert send(b.port, batch) == {"ack": 3}          # the retry lands elsewhere
        assert send(b.port, [op(3, "chat", "c"), op(4, "chat", "d")]) == {"ack": 4}
        assert send(a.port, [op(4, "chat", "d")]) == {"ack": 4}
        chat = [e[1][3] for e in r.command("XRANGE", "ferry:{chat}:stream", "-", "+")]
        other = [e[1][3] for e in r.command("XRANGE", "ferry:{other}:stream", "-", "+")]
        assert chat == ["a", "c", "d"] and other == ["b"], (chat, other)
        assert int(r.cli("PTTL", "ferry:{chat}:sent")) > 0


if __name__ == "__main__":
    require(REDIS_SERVER, REDIS_CLI, "jq", echo_service_path())
    run([test_key_layout, test_history_replay_and_trim, test_redis_unreachable_at_start, test_redis_loses_its_data,
         test_channel_expires_while_watched, test_echo_service,
         test_readme_redis_cli, test_send_is_idempotent_across_instances])
