#!/usr/bin/python3
"""test_redis_stall.py -- a frozen Redis (SIGSTOP): every command has a deadline.

With --redis-timeout 1s and redis-server stopped by SIGSTOP, a publish
answers an error within ~2 s (not after the freeze), healthz says 503
within ~2 s even with no traffic, ferryd's CPU stays low; after SIGCONT
healthz is 200 again, publishes work, and a WebSocket, an SSE and a poll
subscriber connected throughout get every acknowledged message once.
"""
import asyncio
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder: test_redis.py
from harness import Ferry, run, TEST_CLIENT_ID_SECRET  # noqa: E402
from test_redis import (REDIS_SERVER, SUBS, Published, RedisServer, api_publish, check_stream,  # noqa: E402
                        http, require, split_id, wait_healthz)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed_publish(port, data):
    """(status or the exception's name, seconds taken)"""
    t0 = time.monotonic()
    try:
        status, mid = await api_publish(port, "news", data, timeout=12)
    except Exception as e:  # noqa: BLE001 -- a hang shows as a timeout
        status, mid = type(e).__name__, None
    return status, mid, time.monotonic() - t0


def test_frozen_redis():
    with RedisServer() as r, Ferry("--redis", r.url, "--redis-timeout", "1s",
                                   "--client-id-secret", TEST_CLIENT_ID_SECRET) as f:
        pid = f.proc.pid

        def freeze():
            r.proc.send_signal(signal.SIGSTOP)

        def thaw():
            r.proc.send_signal(signal.SIGCONT)

        async def main():
            status, first = await api_publish(f.port, "news", "seed")
            assert status == 200, status
            epoch, seq0 = split_id(first)
            subs = [cls("%s-sub" % name, f.port, "news", first).start() for name, cls in SUBS.items()]
            for s in subs:
                await asyncio.wait_for(s.subscribed.wait(), 10)
            pub = Published()
            maybe = []

            async def publish_ok(n, tag):
                for i in range(n):
                    data = "%s-%d" % (tag, i)
                    status, mid, _ = await timed_publish(f.port, data)
                    assert status == 200, (data, status)
                    pub.ok.append((data, mid, "api"))

            await publish_ok(5, "before")
            for s in subs:
                await s.wait_count(5, 10)

            # 1. frozen with no traffic: healthz goes 503 by itself (PING with a deadline)
            freeze()
            t0 = time.monotonic()
            try:
                await wait_healthz([f.port], 503, 2.5, "after a freeze with no traffic")
                took = time.monotonic() - t0
                assert took < 2.5, took
            finally:
                thaw()
            await wait_healthz([f.port], 200, 10, "after SIGCONT")
            await publish_ok(5, "between")

            # 2. frozen under traffic: each publish answers an error within ~2 s
            await asyncio.sleep(1.0)
            freeze()
            try:
                cpu0, t0 = cpu_seconds(pid), time.monotonic()
                results = []
                while time.monotonic() - t0 < 4.0:
                    data = "frozen-%d" % len(results)
                    status, mid, took = await timed_publish(f.port, data)
                    results.append((data, status, round(took, 2)))
                    if status == 200:
                        pub.ok.append((data, mid, "api"))
                    else:
                        maybe.append(data)  # Redis may still run it when it wakes
                    await asyncio.sleep(0.2)
                wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
                status, _, _ = await http(f.port, "GET", "/ferry/healthz")
            finally:
                thaw()
            print("while frozen: publishes %r; ferryd CPU %.2f s in %.1f s" % (results, cpu, wall))
            assert all(st == 503 and took < 2.0 for _, st, took in results[:1]), results
            assert all(st == 503 for _, st, _ in results), results
            assert max(took for _, _, took in results) < 2.0, results
            assert status == 503, "healthz while frozen: %r" % status
            assert cpu < 0.25 * wall, "ferryd used %.2f s CPU in %.1f s while Redis was frozen" % (cpu, wall)

            t1 = time.monotonic()
            await wait_healthz([f.port], 200, 10, "after SIGCONT")
            print("healthz 200 again %.1f s after SIGCONT" % (time.monotonic() - t1))
            await publish_ok(10, "after")
            want = len(pub.ok)
            for s in subs:
                await s.wait_count(want, 15)
            await asyncio.sleep(0.5)  # anything extra (a duplicate) would arrive now
            for s in subs:
                await s.stop()
            # the subscribers rode out both freezes on their connections or by resuming
            check_stream(subs, pub, seq0 + 1, epoch, maybe=maybe)
            metrics = (await http(f.port, "GET", "/ferry/metrics"))[2]
            metrics = metrics.decode() if isinstance(metrics, bytes) else metrics
            line = [x for x in metrics.splitlines() if 'kind="redis_timeout"' in x]
            assert line and float(line[0].split()[-1]) >= 2, line

        asyncio.run(main())


if __name__ == "__main__":
    require(REDIS_SERVER)
    run([test_frozen_redis])
