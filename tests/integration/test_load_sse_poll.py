#!/usr/bin/python3
"""test_load_sse_poll.py -- 1,000 SSE streams and 1,000 long-poll clients.

All on loopback, asyncio raw sockets. Every client reads channel "load";
then 4 publishers post a burst of 200 messages through the HTTP publish API,
each as fast as ferryd answers. Every SSE client must get all 200 exactly
once, in id order; every long-poll client follows its cursors (held polls,
answers split by a small --poll-max-bytes, "more":true) and must get the
same. Timings are printed; only correctness is asserted. Bounded < 120 s.
"""
import asyncio
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import EventStreamParser, Ferry, ID_RE, parse_head, raise_nofile, run  # noqa: E402

N_SSE = 1000
N_POLL = 1000
N_MESSAGES = 200
N_PUBLISHERS = 4
IN_FLIGHT = 200          # connections being opened at a time
OVERALL = 110.0          # seconds, the bound of the whole test
CHANNEL = "load"


def clients_that_fit(wanted):
    """Soft RLIMIT_NOFILE to the hard limit (ferryd inherits it); returns
    how many clients of each kind fit."""
    hard = raise_nofile()
    per_kind = wanted
    if hard < 2 * wanted + 200:
        per_kind = max(50, (hard - 200) // 2)
        print("NOTE: RLIMIT_NOFILE hard limit is %d: testing %d + %d clients instead of %d + %d"
              % (hard, per_kind, per_kind, wanted, wanted), flush=True)
    return per_kind


async def read_response(reader):
    """One HTTP/1.1 response with Content-Length -> (status, headers, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    r = parse_head(head[:-4])
    body = await reader.readexactly(int(r.headers.get("content-length", "0")))
    return r.status, r.headers, body


class SSEClient:
    def __init__(self):
        self.ids = []
        self.reader = self.writer = None
        self.subscribed = asyncio.Event()
        self.done = asyncio.Event()
        self.error = None

    async def connect(self, port):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer.write(("GET /ferry/sse?ch=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                           "Accept: text/event-stream\r\n\r\n" % (CHANNEL, port)).encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head

    async def read(self):
        try:
            parser = EventStreamParser()
            blocks = []
            while len(self.ids) < N_MESSAGES:
                if not blocks:
                    chunk = await self.reader.read(65536)
                    if not chunk:
                        raise ConnectionError("the stream ended after %d messages" % len(self.ids))
                    blocks = parser.feed(chunk)
                    continue
                block = blocks.pop(0)
                if block.event == "ferry":
                    if block.control()["type"] == "subscribed":
                        self.subscribed.set()
                    continue
                if block.data is None:
                    continue  # the retry: block
                mid = block.id
                assert mid and mid.startswith(CHANNEL + ","), block
                self.ids.append(mid[len(CHANNEL) + 1:])
        except Exception as e:  # noqa: BLE001 -- checked by the test
            self.error = e
        finally:
            self.done.set()

    def close(self):
        if self.writer:
            self.writer.close()


class PollClient:
    def __init__(self, index, late=None):
        self.client_id = "lp%d" % index
        self.late = late  # an Event to wait for before following
        self.ids = []
        self.cursor = None
        self.polls = 0
        self.mores = 0
        self.reader = self.writer = None
        self.done = asyncio.Event()
        self.error = None

    async def request(self, port, query):
        self.polls += 1
        self.writer.write(("GET /ferry/poll?%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                           % (query, port)).encode())
        status, headers, body = await read_response(self.reader)
        assert status == 200, (status, body)
        assert headers.get("connection", "").lower() != "close", headers
        return json.loads(body)

    async def first_poll(self, port):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        # the id negotiate issues (client= takes no other)
        self.writer.write(("GET /ferry/negotiate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                           % port).encode())
        status, _, body = await read_response(self.reader)
        assert status == 200, (status, body)
        self.client_id = json.loads(body)["client"]
        answer = await self.request(port, "ch=%s&client=%s" % (CHANNEL, self.client_id))
        assert answer["messages"] == [], answer
        self.cursor = answer["cursors"][CHANNEL]

    async def follow(self, port):
        try:
            if self.late is not None:
                await self.late.wait()
            while len(self.ids) < N_MESSAGES:
                answer = await self.request(port, "ch=%s,%s&client=%s"
                                            % (CHANNEL, self.cursor, self.client_id))
                assert answer["resets"] == [], answer
                msgs = answer["messages"]
                self.ids += [m["id"] for m in msgs]
                if msgs:
                    assert answer["cursors"][CHANNEL] == msgs[-1]["id"], answer
                else:
                    assert answer["cursors"][CHANNEL] == self.cursor, answer
                if answer["more"]:
                    self.mores += 1
                self.cursor = answer["cursors"][CHANNEL]
        except Exception as e:  # noqa: BLE001 -- checked by the test
            self.error = e
        finally:
            self.done.set()

    def close(self):
        if self.writer:
            self.writer.close()


async def gauge(port, transport):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ferry/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    _, _, body = await read_response(reader)
    writer.close()
    m = re.search(r'^ferry_connections\{transport="%s"\} (\d+)' % transport, body.decode(), re.M)
    return int(m.group(1))


async def publisher(port, k, count, ids):
    """Publish count messages on one keep-alive connection, each as soon as
    the previous one is answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in range(count):
            body = ("publisher %d message %d " % (k, i)).ljust(120, ".").encode()
            writer.write(b"POST /ferry/publish/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                         % (CHANNEL.encode(), len(body)) + body)
            status, _, resp = await read_response(reader)
            assert status == 200, (status, resp)
            ids.append(json.loads(resp)["id"])
    finally:
        writer.close()


async def bounded_gather(factories, limit):
    sem = asyncio.Semaphore(limit)

    async def one(f):
        async with sem:
            return await f()
    return await asyncio.gather(*(one(f) for f in factories))


def test_burst_to_sse_and_poll_clients():
    n = clients_that_fit(max(N_SSE, N_POLL))
    n_sse, n_poll = min(N_SSE, n), min(N_POLL, n)
    with Ferry("--max-connections", str(n_sse + n_poll + 500), "--poll-max-bytes", "2K",
               "--poll-timeout", "10s", "--heartbeat", "60s", "--out-queue-max", "4M",
               "--history-size", str(N_MESSAGES + 10), startup_timeout=20) as f:
        async def main():
            t0 = time.monotonic()
            sse = [SSEClient() for _ in range(n_sse)]
            # a tenth of the poll clients take their position now but poll
            # again only after the burst: their backlog needs several answers
            burst_done = asyncio.Event()
            polls = [PollClient(i, burst_done if i % 10 == 9 else None) for i in range(n_poll)]
            n_held = sum(1 for c in polls if c.late is None)
            readers = []
            try:
                await bounded_gather([lambda c=c: c.connect(f.port) for c in sse], IN_FLIGHT)
                readers += [asyncio.ensure_future(c.read()) for c in sse]
                await asyncio.wait_for(asyncio.gather(*(c.subscribed.wait() for c in sse)), 30)
                t_sse = time.monotonic()
                await bounded_gather([lambda c=c: c.first_poll(f.port) for c in polls], IN_FLIGHT)
                readers += [asyncio.ensure_future(c.follow(f.port)) for c in polls]
                # every poll is held before the burst
                deadline = time.monotonic() + 30
                while await gauge(f.port, "poll") < n_held:
                    assert time.monotonic() < deadline, "polls not all held"
                    await asyncio.sleep(0.1)
                t_ready = time.monotonic()
                print("     %d SSE streams open in %.1fs, %d polls held %.1fs later"
                      % (n_sse, t_sse - t0, n_held, t_ready - t_sse), flush=True)

                ids = []
                per = N_MESSAGES // N_PUBLISHERS
                await asyncio.wait_for(asyncio.gather(
                    *(publisher(f.port, k, per, ids) for k in range(N_PUBLISHERS))), 30)
                t_pub = time.monotonic()
                assert len(ids) == N_MESSAGES == len(set(ids)), len(ids)
                # one channel: the ids are seq 1..N in the channel's one epoch
                parsed = sorted((int(ID_RE.match(i).group(2)), i) for i in ids)
                assert [s for s, _ in parsed] == list(range(1, N_MESSAGES + 1)), parsed[:5]
                expected = [i for _, i in parsed]
                burst_done.set()
                print("     %d messages published by %d publishers in %.2fs"
                      % (N_MESSAGES, N_PUBLISHERS, t_pub - t_ready), flush=True)

                left = OVERALL - (time.monotonic() - t0) - 5
                done, pending = await asyncio.wait(
                    [asyncio.ensure_future(c.done.wait()) for c in sse + polls], timeout=left)
                t_end = time.monotonic()
                for p in pending:
                    p.cancel()
                bad = []
                for kind, clients in (("sse", sse), ("poll", polls)):
                    for i, c in enumerate(clients):
                        if c.error is not None:
                            bad.append("%s #%d: %r (after %d messages)" % (kind, i, c.error, len(c.ids)))
                        elif c.ids != expected:
                            lost = len(set(expected) - set(c.ids))
                            dup = len(c.ids) - len(set(c.ids))
                            bad.append("%s #%d: %d messages, %d lost, %d duplicated, in order: %s"
                                       % (kind, i, len(c.ids), lost, dup, c.ids == sorted(
                                           c.ids, key=lambda x: int(x.split(":")[1]))))
                total_polls = sum(c.polls for c in polls)
                mores = sum(c.mores for c in polls)
                print("     all delivered %.2fs after the burst started (%.1fs in all); "
                      "long-poll: %d requests, %d answers with more:true"
                      % (t_end - t_ready, t_end - t0, total_polls, mores), flush=True)
                assert not bad, "%d clients wrong, e.g.:\n  %s" % (len(bad), "\n  ".join(bad[:10]))
                late = [c for c in polls if c.late is not None]
                assert all(c.mores > 0 for c in late), "a backlog was not split by the byte cap"
            finally:
                for r in readers:
                    r.cancel()
                for c in sse + polls:
                    c.close()
                await asyncio.sleep(0.1)

        asyncio.run(asyncio.wait_for(main(), OVERALL))


if __name__ == "__main__":
    run([test_burst_to_sse_and_poll_clients])
