#!/usr/bin/python3
"""test_soak.py -- ferryd under a mix of good and abusive clients at once.

For FERRY_SOAK_SECONDS (45 in `make check`, 300 in `make soak`), one ferryd
(under ASan in CI) serves, side by side:
  - normal subscribers on every transport: WebSocket, SSE (format=json) and
    long-polling, each on two channels;
  - reconnect loops: WebSocket and SSE clients that drop their connection
    every second or two and come back with their cursors (WebSocket: ch=NAME,
    CURSOR; SSE: Last-Event-ID);
  - non-reading WebSocket and SSE subscribers (a tiny receive buffer, never
    read): each is cut as a slow consumer and comes straight back;
  - ping flooders: WebSocket clients that send pings and never read;
  - pipeliners: connections that send requests back to back and never read,
    one of them behind a held long-poll.
A publisher sends 20 messages a second to each channel. At the end every
normal and reconnecting client has seen every message exactly once and in
order, ferryd's RSS stayed under a stated bound throughout, and ferryd exits
cleanly on SIGTERM (the harness fails on a sanitizer report or a non-zero
status, which LeakSanitizer gives for a leak).
"""
import asyncio
import base64
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import EventStreamParser, Ferry, Publisher, raise_nofile, run  # noqa: E402

import websockets  # noqa: E402  (Debian python3-websockets 10.4)

SECONDS = float(os.environ.get("FERRY_SOAK_SECONDS", "45"))
CHANNELS = ["soak-a", "soak-b"]
RATE = 20  # messages per second per channel
# ferryd's resident memory may not pass this, attackers and all. The
# out-queue cap is 64 KiB; 40 clients at once can be over it briefly; ASan's
# quarantine is set to 16 MiB below, its shadow memory is most of the rest.
RSS_BOUND_MB = 300

FERRY_ARGS = ["--out-queue-max", "64K", "--history-size", "1000", "--rate-messages", "0",
              "--rate-messages-per-address", "0", "--max-connections-per-ip", "0",
              "--ws-ping", "5s", "--poll-timeout", "5s"]


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


class Seen:
    """What one normal client received: per channel, the message numbers in
    order of arrival."""

    def __init__(self, name):
        self.name = name
        self.nums = {ch: [] for ch in CHANNELS}
        self.cursor = {}

    def add(self, channel, mid, data):
        self.nums[channel].append(int(data))
        self.cursor[channel] = mid

    def check(self, published):
        for ch in CHANNELS:
            want = list(range(published[ch]))
            got = self.nums[ch]
            if got != want:
                dup = len(got) - len(set(got))
                missing = sorted(set(want) - set(got))[:10]
                raise AssertionError("%s on %s: %d of %d messages, %d repeated, missing %r, "
                                     "first out of order at %r" % (
                                         self.name, ch, len(got), len(want), dup, missing,
                                         next((i for i, (a, b) in enumerate(zip(got, want))
                                               if a != b), None)))


def query(cursor):
    return "&".join("ch=%s%s" % (ch, "," + cursor[ch] if ch in cursor else "") for ch in CHANNELS)


async def ws_subscriber(port, seen, stop, reconnect_every=None):
    while not stop.is_set():
        url = "ws://127.0.0.1:%d/ferry/ws?%s" % (port, query(seen.cursor))
        try:
            async with websockets.connect(url, max_size=None, ping_interval=None,
                                          open_timeout=5) as ws:
                until = time.monotonic() + reconnect_every if reconnect_every else None
                while not stop.is_set():
                    left = (until - time.monotonic()) if until else 1.0
                    if until and left <= 0:
                        break
                    try:
                        raw = await asyncio.wait_for(ws.recv(), max(left, 0.01))
                    except asyncio.TimeoutError:
                        continue
                    m = json.loads(raw)
                    if m["type"] == "message":
                        seen.add(m["channel"], m["id"], m["data"])
                    elif m["type"] == "subscribed":
                        seen.cursor.setdefault(m["channel"], m["cursor"])
                    elif m["type"] == "reset":
                        raise AssertionError("%s: reset %r" % (seen.name, m))
        except (OSError, websockets.exceptions.WebSocketException, asyncio.TimeoutError):
            await asyncio.sleep(0.2)


async def http_open(port, request, rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request)
    return reader, writer


def get(path, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (path, extra)).encode()


async def sse_subscriber(port, seen, stop, reconnect_every=None):
    while not stop.is_set():
        extra = "Accept: text/event-stream\r\n"
        if seen.cursor:
            extra += "Last-Event-ID: %s\r\n" % " ".join(
                "%s,%s" % kv for kv in sorted(seen.cursor.items()))
        try:
            reader, writer = await http_open(port, get("/ferry/sse?format=json&" + query({}),
                                                       extra))
        except OSError:
            await asyncio.sleep(0.2)
            continue
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if b" 200 " not in head.split(b"\r\n")[0]:
                await asyncio.sleep(0.5)
                continue
            chunked = b"chunked" in head.lower()
            parser = EventStreamParser()
            until = time.monotonic() + reconnect_every if reconnect_every else None
            while not stop.is_set() and not (until and time.monotonic() > until):
                try:
                    data = await asyncio.wait_for(reader.read(65536), 0.5)
                except asyncio.TimeoutError:
                    continue
                if not data:
                    break
                assert not chunked, "an SSE stream is not chunked here"
                for b in parser.feed(data):
                    ctl = b.control()
                    if ctl and ctl["type"] == "reset":
                        raise AssertionError("%s: reset %r" % (seen.name, ctl))
                    if ctl and ctl["type"] == "subscribed":
                        seen.cursor.setdefault(ctl["channel"], ctl["cursor"])
                    if b.event == "ferry" or b.data is None:
                        continue
                    m = json.loads(b.data)
                    if m.get("type") == "message":
                        seen.add(m["channel"], m["id"], m["data"])
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            await asyncio.sleep(0.2)
        finally:
            writer.close()


async def poll_subscriber(port, seen, stop):
    cursor = {}
    while not stop.is_set():
        try:
            reader, writer = await http_open(port, get("/ferry/poll?" + query(cursor),
                                                       "Connection: close\r\n"))
            raw = await asyncio.wait_for(reader.read(), 15)
            writer.close()
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.2)
            continue
        head, _, body = raw.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            await asyncio.sleep(0.5)
            continue
        r = json.loads(body)
        assert not r["resets"], (seen.name, r["resets"])
        for m in r["messages"]:
            seen.add(m["channel"], m["id"], m["data"])
        cursor = r["cursors"]


WS_HANDSHAKE = ("GET /ferry/ws?ch=soak-a&ch=soak-b HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                % base64.b64encode(b"0123456789abcdef").decode()).encode()


def masked_ping(payload=b"x" * 100):
    return bytes([0x89, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


async def attacker(port, stop, first, then, rcvbuf=4096, counts=None, kind="?"):
    """Connect, send `first`, then `then` over and over as fast as ferryd
    takes it, never reading; reconnect when ferryd closes."""
    while not stop.is_set():
        try:
            _, writer = await http_open(port, first, rcvbuf=rcvbuf)
            counts[kind] = counts.get(kind, 0) + 1
            while not stop.is_set():
                if then:
                    writer.write(then)
                    await asyncio.wait_for(writer.drain(), 1.0)
                else:
                    await asyncio.sleep(0.5)
                    if writer.transport.is_closing():
                        break
        except asyncio.TimeoutError:
            continue  # ferryd stopped reading: keep the pressure, keep the socket
        except OSError:
            await asyncio.sleep(0.05)
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass


def tcp_state(sock):
    """The kernel's TCP state of sock (1: established), from TCP_INFO."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


async def non_reader(port, stop, path, counts, kind):
    """A subscriber that never reads (a 2 KiB receive buffer): when ferryd
    cuts it, or after 10 s, it comes back."""
    loop = asyncio.get_running_loop()
    if "/ws" in path:
        extra = ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n")
    else:
        extra = "Accept: text/event-stream\r\n"
    while not stop.is_set():
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, get(path, extra))
            counts[kind] = counts.get(kind, 0) + 1
            deadline = time.monotonic() + 10
            while not stop.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                if tcp_state(sock) != 1:  # ferryd closed it
                    break
        except OSError:
            await asyncio.sleep(0.1)
        finally:
            sock.close()


async def publisher(port, stop, published):
    loop = asyncio.get_running_loop()
    pub = Publisher(port, timeout=10)
    n = 0
    start = time.monotonic()
    try:
        while not stop.is_set():
            for ch in CHANNELS:
                await loop.run_in_executor(None, pub.publish, ch, str(n))
                published[ch] = n + 1
            n += 1
            delay = start + n / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    finally:
        pub.close()


def test_soak_mixed_abuse():
    raise_nofile()
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=16"}
    with Ferry(*FERRY_ARGS, env=env) as f:
        pid = f.proc.pid
        published = {ch: 0 for ch in CHANNELS}
        rss = []
        counts = {}
        normal = []

        async def main():
            stop_pub = asyncio.Event()
            stop = asyncio.Event()
            tasks = []

            def spawn(coro):
                tasks.append(asyncio.ensure_future(coro))

            for i in range(8):
                s = Seen("ws-%d" % i)
                normal.append(s)
                spawn(ws_subscriber(f.port, s, stop))
            for i in range(8):
                s = Seen("sse-%d" % i)
                normal.append(s)
                spawn(sse_subscriber(f.port, s, stop))
            for i in range(4):
                s = Seen("poll-%d" % i)
                normal.append(s)
                spawn(poll_subscriber(f.port, s, stop))
            for i in range(3):
                s = Seen("ws-reconnect-%d" % i)
                normal.append(s)
                spawn(ws_subscriber(f.port, s, stop, reconnect_every=1.0 + i * 0.4))
                s = Seen("sse-reconnect-%d" % i)
                normal.append(s)
                spawn(sse_subscriber(f.port, s, stop, reconnect_every=1.2 + i * 0.4))
            await asyncio.sleep(1.0)  # subscribers first: they must see message 0
            spawn(publisher(f.port, stop_pub, published))
            for i in range(10):
                spawn(non_reader(f.port, stop, "/ferry/ws?ch=soak-a&ch=soak-b", counts,
                                 "non-reading ws"))
            for i in range(10):
                spawn(non_reader(f.port, stop, "/ferry/sse?ch=soak-a&ch=soak-b", counts,
                                 "non-reading sse"))
            for i in range(2):
                spawn(attacker(f.port, stop, WS_HANDSHAKE, masked_ping() * 64, counts=counts,
                               kind="ping flood"))
            for i in range(2):
                spawn(attacker(f.port, stop, get("/ferry/healthz"), get("/ferry/healthz") * 64,
                               counts=counts, kind="pipelining"))
            spawn(attacker(f.port, stop, get("/ferry/poll?ch=soak-quiet,00000000:0"),
                           get("/ferry/healthz") * 64, counts=counts,
                           kind="pipelining behind a poll"))

            start = time.monotonic()
            while time.monotonic() - start < SECONDS:
                await asyncio.sleep(1.0)
                rss.append(rss_mb(pid))
                for t in tasks:
                    if t.done() and t.exception():
                        raise t.exception()
            stop_pub.set()
            # the normal clients catch up on the last messages, then stop
            await asyncio.sleep(4.0 + 5.0)  # a poll may wait out --poll-timeout
            stop.set()
            await asyncio.wait(tasks, timeout=20)
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception():
                    raise t.exception()
                t.cancel()

        asyncio.run(main())
        print("published %r; attacks %r; RSS MB min %.0f max %.0f last %.0f" % (
            published, counts, min(rss), max(rss), rss[-1]), flush=True)
        assert published[CHANNELS[0]] >= RATE * SECONDS * 0.5, published
        for what in ("non-reading ws", "non-reading sse", "ping flood", "pipelining"):
            assert counts.get(what, 0) >= 1, (what, counts)
        assert max(rss) < RSS_BOUND_MB, "ferryd RSS reached %.0f MB (bound %d)" % (
            max(rss), RSS_BOUND_MB)
        for s in normal:
            s.check(published)


if __name__ == "__main__":
    run([test_soak_mixed_abuse])
