#!/usr/bin/python3
"""test_redis_sentinel.py -- Redis Sentinel: 1 master, 2 replicas, 3 sentinels
(real redis-server processes on loopback, down-after-milliseconds 1000).

- discovery: ferryd with redis+sentinel://S1,S2,S3/mymaster finds the master
  (also when the first sentinel listed is down), and says so when no
  sentinel knows the name or none answers; --redis-wait-replicas 2 acknowledges,
  16 (its maximum, more than there are) answers 503 after the WAIT;
- failover: three ferryd, WebSocket, SSE and long-poll subscribers on each, a
  publisher at ~100 msg/s round-robin; the master is SIGKILLed mid-stream.
  Every acknowledged publish reaches every subscriber exactly once, in
  order; publishes during the failover get an error (503), never a silent
  drop; every ferryd is healthy again within down-after-milliseconds + 2 s
  of Sentinel's +switch-master (and ferry_errors_total{kind="redis_failover"}
  counts it); no ferryd aborts or hangs.
"""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder: test_redis.py
from harness import FERRYD, Ferry, free_port, run, TEST_CLIENT_ID_SECRET  # noqa: E402
from test_redis import (REDIS_SERVER, SUBS, Published, RedisServer, api_publish, check_stream,  # noqa: E402
                        http, require, resp_command, split_id, wait_healthz, wait_until)

DOWN_AFTER_MS = 1000


class Node(RedisServer):
    """A redis-server (or sentinel) with extra arguments or a config file."""

    def __init__(self, extra, conf=None):
        super().__init__()
        self.extra = list(extra)
        self.conf = conf

    def start(self, timeout=10.0):
        args = [REDIS_SERVER]
        if self.conf is not None:
            path = os.path.join(self.dir, "sentinel.conf")
            with open(path, "w") as fh:
                fh.write(self.conf % {"port": self.port, "dir": self.dir})
            args += [path, "--sentinel"]
        else:
            args += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--daemonize", "no",
                     "--save", "", "--appendonly", "no"] + self.extra
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
        wait_until("redis answers PING", up, timeout)
        return self

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


SENTINEL_CONF = """port %(port)d
bind 127.0.0.1
dir %(dir)s
sentinel monitor mymaster 127.0.0.1 {master} 2
sentinel down-after-milliseconds mymaster {down}
sentinel failover-timeout mymaster 5000
sentinel parallel-syncs mymaster 1
"""


class Sentinels:
    """1 master, 2 replicas, 3 sentinels; stopped by PID."""

    def __enter__(self):
        self.nodes = []
        try:
            self.master = Node([]).start()
            self.nodes.append(self.master)
            self.replicas = [Node(["--replicaof", "127.0.0.1", str(self.master.port)]).start() for _ in range(2)]
            self.nodes += self.replicas
            conf = SENTINEL_CONF.replace("{master}", str(self.master.port)).replace("{down}", str(DOWN_AFTER_MS))
            self.sentinels = [Node([], conf=conf).start() for _ in range(3)]
            self.nodes += self.sentinels
            wait_until("replicas in sync", lambda: all(
                b"master_link_status:up" in r.command("INFO", "replication").encode() for r in self.replicas), 15)
            wait_until("sentinels see each other and the replicas", lambda: all(
                int(dict(zip(*[iter(s.command("SENTINEL", "master", "mymaster"))] * 2))["num-other-sentinels"]) == 2
                and int(dict(zip(*[iter(s.command("SENTINEL", "master", "mymaster"))] * 2))["num-slaves"]) == 2
                for s in self.sentinels), 20)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for n in self.nodes:
            n.stop()
            shutil.rmtree(n.dir, ignore_errors=True)

    def url(self, sentinels=None):
        return "redis+sentinel://%s/mymaster" % ",".join(
            "127.0.0.1:%d" % s.port for s in (sentinels or self.sentinels))

    def master_addr(self):
        return self.sentinels[0].command("SENTINEL", "get-master-addr-by-name", "mymaster")


def ferry_log(f):
    with open(f.log.name, errors="replace") as fh:
        return fh.read()


def test_discovery():
    require(REDIS_SERVER)
    with Sentinels() as t:
        dead = free_port()  # a sentinel that is not there, listed first
        url = "redis+sentinel://127.0.0.1:%d,%s/mymaster" % (dead, t.url().split("//")[1].split("/")[0])
        with Ferry("--redis", url) as f:
            async def main():
                await wait_healthz([f.port], 200, 10, "through the sentinels")
                status, mid = await api_publish(f.port, "s", "hello")
                assert status == 200, status
                assert t.master.command("XLEN", "ferry:{s}:stream") == 1
            asyncio.run(main())
            assert "127.0.0.1:%d" % t.master.port in ferry_log(f), ferry_log(f)
        # --redis-wait-replicas: 2 (both replicas) acknowledges; at its maximum, 16, more
        # replicas than there are: 503 after the WAIT (half of --redis-timeout), outcome unknown
        with Ferry("--redis", t.url(), "--redis-wait-replicas", "2") as f:
            async def main():
                await wait_healthz([f.port], 200, 10, "with --redis-wait-replicas 2")
                assert (await api_publish(f.port, "w", "two"))[0] == 200
            asyncio.run(main())
        with Ferry("--redis", t.url(), "--redis-wait-replicas", "16", "--redis-timeout", "1s") as f:
            async def main():
                await wait_healthz([f.port], 200, 10, "with --redis-wait-replicas 16")
                t0 = time.monotonic()
                status, _ = await api_publish(f.port, "w", "sixteen")
                took = time.monotonic() - t0
                assert status == 503 and 0.4 < took < 2, (status, took)
                # the master has it (that is what "outcome unknown" means)
                assert t.master.command("XLEN", "ferry:{w}:stream") == 2
            asyncio.run(main())
        p = subprocess.run([FERRYD, "--redis", t.url(), "--redis-wait-replicas", "17"],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode != 0 and "redis-wait-replicas" in p.stderr + p.stdout, p
        # a name no sentinel knows; no sentinel at all: 503, and the log says which
        with Ferry("--redis", t.url().replace("mymaster", "nosuch")) as f:
            asyncio.run(wait_healthz([f.port], 503, 5, "for an unknown master name"))
            wait_until("ferryd says no sentinel knows the name",
                       lambda: "no sentinel knows master 'nosuch'" in ferry_log(f), 5)
            status, _, body = asyncio.run(http(f.port, "GET", "/ferry/healthz"))
            assert "no sentinel knows master 'nosuch'" in json.loads(body)["backend_problem"], body
        with Ferry("--redis", "redis+sentinel://127.0.0.1:%d/mymaster" % dead) as f:
            asyncio.run(wait_healthz([f.port], 503, 5, "with no sentinel"))
            wait_until("ferryd says no sentinel is reachable",
                       lambda: "no sentinel reachable" in ferry_log(f), 5)


def test_master_killed_mid_stream():
    require(REDIS_SERVER)
    with Sentinels() as t:
        old_master = t.master.port
        args = ("--redis", t.url(), "--redis-timeout", "1s", "--history-size", "5000",
                "--client-id-secret", TEST_CLIENT_ID_SECRET, "--poll-timeout", "3s")
        with Ferry(*args) as f1, Ferry(*args) as f2, Ferry(*args) as f3:
            ferries = [f1, f2, f3]
            ports = [f.port for f in ferries]

            async def main():
                await wait_healthz(ports, 200, 10, "through the sentinels")
                status, first = await api_publish(ports[0], "news", "seed")
                assert status == 200, status
                epoch, seq0 = split_id(first)
                subs = [cls("%s-%d" % (name, i), p, "news", first).start()
                        for i, p in enumerate(ports) for name, cls in SUBS.items()]
                for s in subs:
                    await asyncio.wait_for(s.subscribed.wait(), 10)
                pub = Published()
                in_doubt = []  # failed with "outcome unknown": may be stored
                stop = asyncio.Event()
                times = {}

                async def publisher():
                    i = 0
                    while not stop.is_set():
                        data = "m-%d" % i
                        status, mid = await api_publish(ports[i % 3], "news", data, timeout=15)
                        if status == 200:
                            pub.ok.append((data, mid, "api"))
                        else:
                            assert status == 503, (data, status)
                            pub.failed.append((data, status, "api"))
                            in_doubt.append(data)
                        i += 1
                        await asyncio.sleep(0.01)

                async def operator():
                    loop = asyncio.get_running_loop()
                    while len(pub.ok) < 100:
                        await asyncio.sleep(0.05)
                    times["kill"] = time.monotonic()
                    await loop.run_in_executor(None, t.master.kill)
                    n_before = len(pub.failed)
                    # Sentinel promotes a replica...
                    deadline = time.monotonic() + 30
                    while int(t.master_addr()[1]) == old_master:
                        assert time.monotonic() < deadline, "no failover within 30 s"
                        await asyncio.sleep(0.05)
                    times["switch"] = time.monotonic()
                    # ...and every ferryd follows it
                    await wait_healthz(ports, 200, DOWN_AFTER_MS / 1000 + 2, "after the failover")
                    times["healthy"] = time.monotonic()
                    n = len(pub.ok)
                    while len(pub.ok) < n + 100:
                        await asyncio.sleep(0.05)
                    times["failed"] = len(pub.failed) - n_before
                    stop.set()

                await asyncio.gather(publisher(), operator())
                # all acknowledged messages, everywhere: give them time to arrive
                want = len(pub.ok)
                deadline = time.monotonic() + 30
                while any(len(s.received) < want for s in subs) and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)
                await asyncio.gather(*(s.stop() for s in subs))
                sys.stderr.write("failover: +switch-master %.2f s after SIGKILL, all ferryd healthy %.2f s after "
                                 "that; %d publishes refused meanwhile, %d acknowledged in all\n" % (
                                     times["switch"] - times["kill"], times["healthy"] - times["switch"],
                                     times["failed"], len(pub.ok)))
                assert pub.failed, "no publish was refused during the failover"
                check_stream(subs, pub, seq0 + 1, epoch, maybe=set(in_doubt))
                # the new master has every acknowledged message
                new_port = int(t.master_addr()[1])
                assert resp_command(new_port, "XLEN", "ferry:{news}:stream") >= want
                for p in ports:
                    status, _, body = await http(p, "GET", "/ferry/metrics")
                    text = body.decode()
                    assert 'kind="redis_failover"} ' in text, text[:2000]
                    n = [ln for ln in text.splitlines() if 'kind="redis_failover"}' in ln]
                    assert n and float(n[0].rsplit(" ", 1)[1]) >= 1, n
            asyncio.run(main())
            for f in ferries:
                assert f.proc.poll() is None, "a ferryd exited: " + ferry_log(f)


if __name__ == "__main__":
    run([test_discovery, test_master_killed_mid_stream])
