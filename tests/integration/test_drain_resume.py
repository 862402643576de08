#!/usr/bin/python3
"""test_drain_resume.py -- a drain loses nothing a client can resume.

On SIGTERM a ferryd sends its clients away, each told to come back after a
random delay up to --reconnect-delay (WebSocket close 1012 "retry=<ms>", SSE
"retry:" and a reconnect event, a held poll 503 with Retry-After). While a
client is away, its channel keeps moving. History kept by count alone (100
messages, 5 s at 20 msg/s) was outrun by that delay: the client came back to
`reset too_old` and had lost messages (issue 13, defect 8). History is now
also kept by age (--history-age, 30 s by default, up to --history-max
messages), so a reconnect within the drain's delays always resumes.

- behind HAProxy (docker/haproxy.cfg, via scripts/topology) with three
  ferryd sharing one redis-server: a publisher at 20 msg/s, subscribers on
  every transport (WebSocket resuming with its cursor, SSE with
  Last-Event-ID, long-poll with its cursors), each honouring the delay it is
  told; one instance is drained (SIGTERM). Every subscriber gets every
  message exactly once and in order, and no reset. --reconnect-delay is 10 s
  here so that, on every run, clients stay away longer than 100 messages
  last (the default 5 s did it in 1 run of 3);
- the embedded backend: more than --history-size messages within
  --history-age, resumed from the first on every transport;
- the bounds: --history-max caps a young history, and past --history-age
  only --history-size stay (embedded and Redis).
"""
import asyncio
import importlib.machinery
import importlib.util
import json
import os
import random
import re
import signal
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder: test_redis.py
from harness import Ferry, Publisher, SSEStream, TEST_CLIENT_ID_SECRET, raw_http, run  # noqa: E402
from test_redis import (WAIT, PollSub, Published, RedisServer, SseSub, WsSub, api_publish,  # noqa: E402
                        check_stream, http, require, split_id)
from wsclient import arun, connect, recv_json  # noqa: E402

import websockets  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "scripts", "topology")


def load_topology():
    loader = importlib.machinery.SourceFileLoader("topology", SCRIPT)
    spec = importlib.util.spec_from_loader("topology", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


topology = load_topology()

RATE = 20               # messages per second
RECONNECT_DELAY_MS = 10000
# docker/ferry.env's history (100 messages), defaults otherwise: the history
# by age is ferryd's default
SETTINGS = {"FERRY_DRAIN_WINDOW": "2s", "FERRY_DRAIN_TIMEOUT": "20s",
            "FERRY_RECONNECT_DELAY": "%dms" % RECONNECT_DELAY_MS,
            "FERRY_POLL_TIMEOUT": "4s", "FERRY_REDIS_TIMEOUT": "2s",
            "FERRY_CLIENT_ID_SECRET": TEST_CLIENT_ID_SECRET}


# ------------------------------------------------ clients that do as they are told

class Obedient:
    """A subscriber that comes back after the delay the drain gave it (and
    after a short jittered pause otherwise), through HAProxy."""

    def init_hints(self):
        self.hint_ms = None
        self.hints = []  # every delay it was told and waited

    async def run(self):
        port = self.port
        while self.connects < self.max_connects:
            self.connects += 1
            self.hint_ms = None
            try:
                await self.session(port)
                self.errors.append("%s: connection ended" % port)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 -- any failure means: reconnect
                self.errors.append("%s: %s: %s" % (port, type(e).__name__, e))
            port = self.fallback
            if self.hint_ms is not None:
                self.hints.append(self.hint_ms)
                await asyncio.sleep(self.hint_ms / 1000.0)
            else:
                await asyncio.sleep(random.uniform(0.05, 0.3))
        self.errors.append("gave up after %d connects" % self.connects)


class DrainWs(Obedient, WsSub):
    """Close 1012 "retry=<ms>": come back after <ms>, with the cursor."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.init_hints()

    async def session(self, port):
        try:
            await WsSub.session(self, port)
        except websockets.exceptions.ConnectionClosed as e:
            m = re.match(r"^retry=(\d+)$", e.rcvd.reason if e.rcvd else "")
            if e.rcvd and e.rcvd.code == 1012 and m:
                self.hint_ms = int(m.group(1))
            raise


class DrainSse(Obedient, SseSub):
    """What EventSource does: after the stream ends, wait the last retry:
    it was sent, then reconnect with Last-Event-ID."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.init_hints()
        self.retry_ms = None
        self.reconnect_events = 0

    async def session(self, port):
        self.retry_ms = None
        try:
            await SseSub.session(self, port)
        finally:
            if self.retry_ms is not None:
                self.hint_ms = self.retry_ms

    def dispatch(self, block):
        if block.retry is not None:
            self.retry_ms = int(block.retry)
        if block.event == "ferry" and block.data and block.control()["type"] == "reconnect":
            self.reconnect_events += 1
            return
        SseSub.dispatch(self, block)


class DrainPoll(Obedient, PollSub):
    """A 503 with Retry-After: wait that long, then poll again (elsewhere)
    with the same cursors."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.init_hints()

    async def session(self, port):
        self.received_since_connect = False
        while True:
            spec = self.channel + ("," + self.cursor if self.cursor else "")
            path = "/ferry/poll?ch=%s&client=%s&t=%d" % (urllib.parse.quote(spec, safe=",:"), self.client,
                                                         self.polls)
            self.polls += 1
            self.subscribed.set()
            status, headers, body = await http(port, "GET", path, timeout=60)
            if status != 200:
                self.errors.append("%s: poll answered %d" % (port, status))
                retry = headers.get("retry-after")
                if retry is not None:
                    self.hint_ms = int(retry) * 1000
                return
            r = json.loads(body)
            self.resets.extend(r.get("resets") or [])
            for m in r["messages"]:
                assert m["channel"] == self.channel, m
                self.got(m["id"], m.get("event"), m["data"])
            self.cursor = r["cursors"][self.channel]


KINDS = {"websocket": DrainWs, "sse": DrainSse, "poll": DrainPoll}


# ---------------------------------------------------------------- tests

def test_drain_behind_haproxy_loses_nothing():
    """SIGTERM one of three instances behind HAProxy at 20 msg/s: every
    subscriber, told to come back up to 10 s later, resumes without a gap."""
    require(topology._which("HAPROXY", "haproxy", "/usr/sbin/haproxy"),
            topology._which("REDIS_SERVER", "redis-server", "/usr/bin/redis-server"))
    with topology.Topology(settings=SETTINGS, echo=False) as t:
        key, ports, lb = t.publish_key, t.ferry_ports, t.lb_port
        victim = 0
        survivors = [p for i, p in enumerate(ports) if i != victim]

        async def main():
            status, first = await api_publish(survivors[0], "news", "seed", key)
            assert status == 200, status
            epoch, seq0 = split_id(first)
            subs = []
            for kind, cls in KINDS.items():
                # on the instance that drains, and behind HAProxy (a third of those drain too)
                for k in range(3):
                    subs.append(cls("victim-%s-%d" % (kind, k), ports[victim], "news", first, fallback=lb))
                for k in range(2):
                    subs.append(cls("lb-%s-%d" % (kind, k), lb, "news", first, fallback=lb))
            for s in subs:
                s.start()
            await asyncio.wait_for(asyncio.gather(*(s.subscribed.wait() for s in subs)), WAIT)
            await asyncio.sleep(0.5)  # held polls and streams settle

            pub = Published()
            n = 20 * RATE  # 20 s: the drain at 2 s, the last client back by ~15 s
            t0 = time.monotonic()
            drained_at = None
            for i in range(n):
                if i == 2 * RATE:
                    t.kill_ferry(victim, signal.SIGTERM)
                    drained_at = time.monotonic()
                status, mid = await api_publish(survivors[i % 2], "news", "m-%d" % i, key)
                assert status == 200, (i, status)
                pub.ok.append(("m-%d" % i, mid, "api"))
                await asyncio.sleep(max(0.0, t0 + (i + 1) / RATE - time.monotonic()))
            assert drained_at is not None
            rc = await asyncio.get_running_loop().run_in_executor(None, t.ferryds[victim].popen.wait, 25)
            assert rc == 0, "the drained instance exited %r" % rc
            try:
                await asyncio.gather(*(s.wait_count(len(pub.ok), 30) for s in subs))
            except AssertionError as e:
                sys.stderr.write("%s\n" % e)
            await asyncio.sleep(0.5)  # a duplicate would come now
            await asyncio.gather(*(s.stop() for s in subs))

            # the premise: clients were sent away for longer than 100
            # messages last (5 s at 20 msg/s), on every transport
            direct = [s for s in subs if s.name.startswith("victim-")]
            for kind in KINDS:
                hints = [h for s in direct if s.transport == kind for h in s.hints]
                assert hints, "no %s client was told to come back later: %r" % (
                    kind, [(s.name, s.errors[-3:]) for s in direct if s.transport == kind])
            longest = max(h for s in direct for h in s.hints)
            assert longest > 5500, "no client stayed away over 5.5 s (longest %d ms)" % longest
            for s in direct:
                assert s.connects >= 2, "%s never reconnected" % s.name
            # and nothing lost, nothing twice, in order, no reset
            check_stream(subs, pub, seq0 + 1, epoch)
            # the SSE clients were told in the stream's own terms
            assert all(s.reconnect_events >= 1 for s in direct if s.transport == "sse")
        asyncio.run(main())


def resume_everywhere(f, start, want_ids):
    """Resume "news" after start on WebSocket, SSE (Last-Event-ID) and
    long-poll: each must continue (no reset) with exactly want_ids."""
    async def ws():
        c = await connect(f, "?ch=news," + start)
        sub = await recv_json(c)
        assert sub["type"] == "subscribed", sub
        got = []
        while len(got) < len(want_ids):
            m = await recv_json(c)
            assert m["type"] == "message", "WebSocket: %r after %d messages" % (m, len(got))
            got.append(m["id"])
        assert got == want_ids, got
    arun(ws(), 30)

    with SSEStream(f.port, "/ferry/sse?ch=news", {"Last-Event-ID": "news," + start}) as s:
        assert s.status == 200, s.head
        assert "ferry-reset" not in s.headers, s.headers
        got = []
        while len(got) < len(want_ids):
            b = s.next_event(timeout=5)
            if b.event == "ferry":
                c = b.control()
                assert c["type"] != "reset", "SSE: %r" % c
                continue
            got.append(b.id.split(",", 1)[1])
        assert got == want_ids, got

    status, headers, body = raw_http(f.port, "GET", "/ferry/poll?ch=news," + start, timeout=10)
    assert status == 200, (status, body)
    r = json.loads(body)
    assert not r["resets"] and "ferry-reset" not in headers, r["resets"]
    got = [m["id"] for m in r["messages"]]
    assert got == want_ids, got


def test_embedded_history_by_age():
    """Defaults: 150 messages in well under --history-age (30 s), more than
    --history-size (100): resuming from the first misses nothing."""
    with Ferry() as f, Publisher(f.port) as p:
        ids = [p.publish("news", "m-%d" % i) for i in range(150)]
        resume_everywhere(f, ids[0], ids[1:])


def poll_history(port, cursor):
    status, headers, body = raw_http(port, "GET", "/ferry/poll?ch=news," + cursor, timeout=10)
    assert status == 200, (status, body)
    r = json.loads(body)
    return [rs["reason"] for rs in r["resets"]], [m["id"] for m in r["messages"]]


def test_history_age_bounds():
    """--history-max caps a young history; once older than --history-age
    only --history-size stay: embedded (swept while idle) and Redis (trimmed
    at the next publish)."""
    opts = ("--history-size", "10", "--history-age", "1s", "--history-max", "50")
    with RedisServer() as r:
        for backend in ([], ["--redis", r.url]):
            with Ferry(*(opts + tuple(backend))) as f, Publisher(f.port) as p:
                ids = [p.publish("news", "m-%d" % i) for i in range(80)]   # ids[i]: seq i + 1
                assert poll_history(f.port, ids[0]) == (["too_old"], ids[30:]), backend
                assert poll_history(f.port, ids[29]) == ([], ids[30:]), backend
                if backend:
                    assert r.command("XLEN", "ferry:{news}:stream") == 50
                time.sleep(1.5)
                if backend:
                    ids.append(p.publish("news", "late"))
                    assert r.command("XLEN", "ferry:{news}:stream") == 10
                    entry = r.command("XRANGE", "ferry:{news}:stream", "-", "+", "COUNT", 1)[0]
                    assert entry[1][:4] == ["e", "", "d", "m-71"] and entry[1][4] == "t", entry
                assert poll_history(f.port, ids[-11]) == ([], ids[-10:]), backend
                assert poll_history(f.port, ids[-12]) == (["too_old"], ids[-10:]), backend


if __name__ == "__main__":
    run([test_embedded_history_by_age, test_history_age_bounds, test_drain_behind_haproxy_loses_nothing])
