#!/usr/bin/python3
"""test_fanout_rate.py -- publish rates per channel and per publisher on
every publish path, and --delivery-budget pacing a broadcast.

Limits: the publish API (429 with Retry-After), a WebSocket client's
publish (an error event, code rate_limited), POST send (429 with
Retry-After) and a backend service's FCALL ferry_publish through a real
redis-server (an error reply). The publisher is keyed by its address or
token subject, so a second connection from the same address shares the
bucket and another address does not.

Pacing: SUBS WebSockets (10,000) on one channel, a burst of MSGS publishes;
with --delivery-budget 50000 the deliveries (ferry_messages_out_total,
sampled by a separate process) run at the budget within 10%, every client
gets every message once and in order, and a WebSocket ping on another
channel (from that separate process, so the test's own loop does not
delay it) is answered within 50 ms throughout.
"""
import asyncio
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))  # tests/lib
sys.path.insert(0, HERE)
from harness import client_id, Ferry, metrics, raise_nofile, raw_http, run  # noqa: E402
import websockets  # noqa: E402  (Debian python3-websockets 10.4)

WAIT = 5.0
OTHER_ADDR = "127.0.0.2"
SUBS = int(os.environ.get("FANOUT_SUBS", "10000"))
MSGS = 20
BUDGET = 50000


def publish(port, channel, source=None):
    return raw_http(port, "POST", "/ferry/publish/" + channel, body=b"x", source=source)


# ---------------------------------------------------------------- limits

def test_api_per_channel():
    """--publish-rate-per-channel 5: a burst to one channel is cut near
    2x5 with 429 + Retry-After; another channel is not affected."""
    with Ferry("--publish-rate-per-channel", "5") as f:
        codes = [publish(f.port, "hot") for _ in range(30)]
        ok = sum(1 for s, _, _ in codes if s == 200)
        refused = [(s, h) for s, h, _ in codes if s == 429]
        assert 10 <= ok <= 13 and refused, [s for s, _, _ in codes]
        assert all(int(h["retry-after"]) >= 1 for _, h in refused), refused[0]
        assert publish(f.port, "cold")[0] == 200
        m = metrics(f.port)
        assert m['ferry_publish_refused_total{path="api",limit="channel"}'] == len(refused), m


def test_api_per_publisher():
    """--publish-rate-per-publisher 5: one address spreading over channels
    is cut near 10; another address still publishes."""
    with Ferry("--publish-rate-per-publisher", "5", "--publish-open") as f:
        codes = [publish(f.port, "c%d" % i)[0] for i in range(30)]
        assert 10 <= codes.count(200) <= 13 and codes.count(429) >= 15, codes
        assert publish(f.port, "c0", source=OTHER_ADDR)[0] == 200
        m = metrics(f.port)
        assert m['ferry_publish_refused_total{path="api",limit="publisher"}'] == codes.count(429)


async def ws_publish_burst(url, channel_of, n):
    """n publishes on one WebSocket; (acks, rate_limited errors)."""
    async with websockets.connect(url, open_timeout=WAIT) as ws:
        assert json.loads(await ws.recv())["type"] == "open"
        for i in range(n):
            await ws.send(json.dumps({"type": "publish", "channel": channel_of(i), "data": "d",
                                      "ref": i + 1}))
        acks = errs = 0
        while acks + errs < n:
            m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if m["type"] == "ack":
                acks += 1
            elif m["type"] == "error":
                assert m["code"] == "rate_limited", m
                errs += 1
        return acks, errs


def test_ws_per_channel_and_publisher():
    """A WebSocket client's publishes: per channel, then per publisher, the
    second connection from the same address sharing its bucket."""
    with Ferry("--client-publish", "--publish-rate-per-channel", "5") as f:
        acks, errs = asyncio.run(ws_publish_burst(f.ws_url + "/ferry/ws", lambda i: "hot", 30))
        assert 10 <= acks <= 13 and errs == 30 - acks, (acks, errs)
        acks, errs = asyncio.run(ws_publish_burst(f.ws_url + "/ferry/ws", lambda i: "cold", 3))
        assert acks == 3, (acks, errs)
    with Ferry("--client-publish", "--publish-rate-per-publisher", "5") as f:
        a1, _ = asyncio.run(ws_publish_burst(f.ws_url + "/ferry/ws", lambda i: "c%d" % i, 20))
        a2, e2 = asyncio.run(ws_publish_burst(f.ws_url + "/ferry/ws", lambda i: "d%d" % i, 20))
        assert 10 <= a1 + a2 <= 14 and e2 >= 15, (a1, a2, e2)
        m = metrics(f.port)
        assert m['ferry_publish_refused_total{path="client",limit="publisher"}'] == 40 - a1 - a2


def send(port, name, ops):
    body = json.dumps({"client": client_id(port, name), "ops": ops}).encode()
    return raw_http(port, "POST", "/ferry/send", {"Content-Type": "text/plain"}, body)


def test_send_per_channel_and_publisher():
    """POST send: each op takes the channel's and the publisher's buckets;
    over either, 429 with Retry-After and nothing of the batch published."""
    with Ferry("--client-publish", "--rate-messages", "0", "--rate-messages-per-address", "0",
               "--publish-rate-per-channel", "5") as f:
        codes = []
        for i in range(30):
            s, h, b = send(f.port, "c%d" % i, [{"seq": 1, "type": "publish", "channel": "hot", "data": "d"}])
            codes.append(s)
            if s == 429:
                assert int(h["retry-after"]) >= 1 and json.loads(b)["error"] == "rate_limited", (h, b)
        assert 10 <= codes.count(200) <= 13 and codes.count(429) == 30 - codes.count(200), codes
        assert send(f.port, "other", [{"seq": 1, "type": "publish", "channel": "cold", "data": "d"}])[0] == 200
    with Ferry("--client-publish", "--rate-messages", "0", "--rate-messages-per-address", "0",
               "--publish-rate-per-publisher", "5") as f:
        # fresh client ids each time: the address is the publisher
        codes = [send(f.port, "p%d" % i, [{"seq": 1, "type": "publish", "channel": "c%d" % i, "data": "d"}])[0]
                 for i in range(30)]
        assert 10 <= codes.count(200) <= 13, codes
        m = metrics(f.port)
        assert m['ferry_publish_refused_total{path="send",limit="publisher"}'] == codes.count(429)


def test_fcall_per_channel():
    """A backend service's FCALL ferry_publish is refused over
    --publish-rate-per-channel (counted in Redis per channel and second),
    with an error reply it sees; another channel is not affected."""
    from test_redis import RedisServer, REDIS_SERVER
    if not os.path.exists(REDIS_SERVER):
        raise AssertionError("no redis-server")
    with RedisServer() as r, Ferry("--redis", r.url, "--publish-rate-per-channel", "5") as f:
        def fcall(ch):
            return r.command("FCALL", "ferry_publish", "2", "ferry:{%s}:stream" % ch,
                             "ferry:{%s}:epoch" % ch, "ferry:{%s}:pub" % ch, "100", "60000",
                             "abcd0123", "", "data")
        # ferry loads its functions on connect
        deadline = time.monotonic() + WAIT
        while raw_http(f.port, "GET", "/ferry/healthz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        start = time.monotonic()
        out = [fcall("hot") for _ in range(20)]
        assert time.monotonic() - start < 0.9, "too slow to stay within one second"
        errors = [o for o in out if not isinstance(o, str)]
        assert len(out) - len(errors) == 5 and "publish rate per channel" in str(errors[0]), out
        assert isinstance(fcall("cold"), str)
        # ferry's own publishes to the hot channel see Redis's count: 429
        s, h, b = publish(f.port, "hot")
        assert s == 429 and b"publish rate" in b, (s, b)


# ---------------------------------------------------------------- pacing

PROBE = r'''
import json, os, socket, struct, sys, time
port, duration = int(sys.argv[1]), float(sys.argv[2])
ws = socket.create_connection(("127.0.0.1", port))
ws.sendall(b"GET /ferry/ws?ch=probe HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
buf = b""
def frame():
    global buf
    while True:
        if len(buf) >= 2:
            n, h = buf[1] & 127, 2
            if n == 126 and len(buf) >= 4:
                n, h = struct.unpack("!H", buf[2:4])[0], 4
            if n < 127 and len(buf) >= h + n:
                p, buf = buf[h:h + n], buf[h + n:]
                return p
        buf += ws.recv(65536)
while b"\r\n\r\n" not in buf:
    buf += ws.recv(65536)
buf = buf[buf.index(b"\r\n\r\n") + 4:]
while b"subscribed" not in frame():
    pass
m = socket.create_connection(("127.0.0.1", port))
def out_total():
    m.sendall(b"GET /ferry/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    r = b""
    while b"\r\n\r\n" not in r:
        r += m.recv(65536)
    head, body = r.split(b"\r\n\r\n", 1)
    n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(body) < n:
        body += m.recv(65536)
    for l in body.split(b"\n"):
        if l.startswith(b"ferry_messages_out_total "):
            return int(float(l.split()[1]))
print("ready", flush=True)
sys.stdin.readline()
pings, samples, ref = [], [], 0
end = time.monotonic() + duration
next_sample = 0
while time.monotonic() < end:
    ref += 1
    p = json.dumps({"type": "ping", "ref": ref}).encode()
    t0 = time.monotonic()
    ws.sendall(bytes([0x81, 0x80 | len(p)]) + b"\0\0\0\0" + p)
    while json.loads(frame()).get("ref") != ref:
        pass
    pings.append(time.monotonic() - t0)
    if time.monotonic() >= next_sample:
        samples.append((time.monotonic(), out_total()))
        next_sample = time.monotonic() + 0.1
    time.sleep(0.01)
print(json.dumps({"pings": pings, "samples": samples}), flush=True)
'''


class Sub(asyncio.Protocol):
    def __init__(self, ready):
        self.buf = bytearray()
        self.ready = ready
        self.subscribed = False

    def connection_made(self, transport):
        self.t = transport
        transport.write(b"GET /ferry/ws?ch=big HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n")

    def data_received(self, data):
        self.buf += data
        if not self.subscribed and b'"subscribed"' in self.buf:
            self.subscribed = True
            self.ready()

    def messages(self):
        """The data of every message frame, in order."""
        b = bytes(self.buf)
        b = b[b.index(b"\r\n\r\n") + 4:]
        out, i = [], 0
        while i + 2 <= len(b):
            n, h = b[i + 1] & 127, 2
            if n == 126:
                n, h = struct.unpack("!H", b[i + 2:i + 4])[0], 4
            if i + h + n > len(b):
                break
            m = json.loads(b[i + h:i + h + n])
            if m["type"] == "message":
                out.append(m["data"])
            i += h + n
        return out


def test_delivery_budget_paces_a_broadcast():
    hard = raise_nofile()
    subs = min(SUBS, hard - 500)
    total = subs * MSGS
    with Ferry("--delivery-budget", str(BUDGET), "--max-connections", str(min(hard - 200, 19500)),
               "--max-connections-per-ip", "0", "--out-queue-max", "16M", "--ws-ping", "1h",
               "--idle-timeout", "1h", startup_timeout=30) as f:
        async def main():
            loop = asyncio.get_running_loop()
            n_ready = [0]
            all_ready = loop.create_future()

            def ready():
                n_ready[0] += 1
                if n_ready[0] == subs and not all_ready.done():
                    all_ready.set_result(None)
            sem = asyncio.Semaphore(200)
            protos = []

            async def connect():
                async with sem:
                    _, p = await loop.create_connection(lambda: Sub(ready), "127.0.0.1", f.port)
                    protos.append(p)
            await asyncio.wait_for(asyncio.gather(*[connect() for _ in range(subs)]), 120)
            await asyncio.wait_for(all_ready, 60)
            expect = total / BUDGET
            probe = await asyncio.create_subprocess_exec(
                "/usr/bin/python3", "-c", PROBE, str(f.port), str(expect + 1.5),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert (await asyncio.wait_for(probe.stdout.readline(), 10)).strip() == b"ready"
            probe.stdin.write(b"go\n")
            await probe.stdin.drain()
            await asyncio.sleep(0.3)  # a baseline sample first
            # the burst: one keep-alive connection, answered at once
            r, w = await asyncio.open_connection("127.0.0.1", f.port)
            for i in range(MSGS):
                w.write(b"POST /ferry/publish/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nm%d"
                        % (len(str(i)) + 1, i))
            await w.drain()
            for i in range(MSGS):
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                assert head.startswith(b"HTTP/1.1 200"), head
                n = int([x for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")][0]
                        .split(b":")[1])
                await r.readexactly(n)
            w.close()
            out = json.loads(await asyncio.wait_for(probe.stdout.readline(), expect + 30))
            await probe.wait()
            deadline = time.monotonic() + 30
            want = ["m%d" % i for i in range(MSGS)]
            while time.monotonic() < deadline:
                if all(len(p.messages()) >= MSGS for p in protos):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.3)
            bad = [p.messages() for p in protos if p.messages() != want]
            assert not bad, "%d of %d clients wrong, e.g. %r" % (len(bad), subs, bad[0][:30])
            for p in protos:
                p.t.close()
            return out
        out = asyncio.run(main())
        s = out["samples"]
        base = s[0][1]
        lo = next(x for x in s if x[1] - base >= 0.1 * total)
        hi = next((x for x in s if x[1] - base >= 0.9 * total), s[-1])
        # unpaced, all of it can fall between two samples
        rate = (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else float("inf")
        worst = max(out["pings"])
        m = metrics(f.port)
        print("  %d subscribers x %d messages: %.0f deliveries/s (budget %d), ping max %.1f ms "
              "over %d pings, paced %d" % (subs, MSGS, rate, BUDGET, worst * 1000, len(out["pings"]),
                                           m["ferry_deliveries_paced_total"]), flush=True)
        assert abs(rate - BUDGET) <= 0.1 * BUDGET, rate
        assert worst < 0.050, sorted(out["pings"])[-5:]
        assert m["ferry_deliveries_paced_total"] > 0.5 * total and m["ferry_fan_out_pauses_total"] >= 1, m


if __name__ == "__main__":
    run([test_api_per_channel, test_api_per_publisher, test_ws_per_channel_and_publisher,
         test_send_per_channel_and_publisher, test_fcall_per_channel, test_delivery_budget_paces_a_broadcast])
