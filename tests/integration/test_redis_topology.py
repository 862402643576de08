#!/usr/bin/python3
"""test_redis_topology.py -- docker-compose's topology on loopback: one
redis-server, three ferryd --redis, HAProxy in front, the example service
(scripts/topology, with the files in docker/).

- fan-out: clients on every instance and behind HAProxy, over WebSocket,
  SSE and long-poll, get every message published anywhere (publish API
  round-robin, WebSocket publishes, POST /ferry/send), exactly once, in order;
- an instance is SIGKILLed mid-stream: its clients reconnect through HAProxy
  with their cursors and miss nothing, see nothing twice;
- Redis restarts mid-stream (append-only, fsync always): acknowledged
  publishes are delivered once, refused ones (503) never; connected clients
  resume without a gap; /ferry/healthz is 503 while Redis is down;
- the example service answers through HAProxy; HAProxy keeps a client's
  sends and polls on one instance;
- scripts/topology itself: JSON and shell output, everything stopped by PID
  on SIGTERM; docker/ files agree with each other.
"""
import asyncio
import importlib.machinery
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder: test_redis.py
from harness import Ferry, free_port, run, signed_client_id, TEST_CLIENT_ID_SECRET  # noqa: E402
from test_redis import (REDIS_SERVER, SUBS, WAIT, Published, SendPublisher, WsPublisher,  # noqa: E402
                        api_publish, check_stream, echo_service_path, expect_reply, http, require, split_id,
                        wait_healthz)

import websockets  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
SCRIPT = os.path.join(TOP, "scripts", "topology")
DOCKER = os.path.join(TOP, "docker")


def load_topology():
    loader = importlib.machinery.SourceFileLoader("topology", SCRIPT)
    spec = importlib.util.spec_from_loader("topology", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


topology = load_topology()

# Quick drains and polls for tests; history long enough for every reconnect.
SETTINGS = {"FERRY_HISTORY_SIZE": "2000", "FERRY_DRAIN_WINDOW": "300ms", "FERRY_DRAIN_TIMEOUT": "3s",
            "FERRY_POLL_TIMEOUT": "4s", "FERRY_REDIS_TIMEOUT": "2s",
            "FERRY_CLIENT_ID_SECRET": TEST_CLIENT_ID_SECRET}
TRANSPORTS = ("websocket", "sse", "poll")


async def seed(port, key, channel):
    """A first message: subscribers start after it, so they all expect the same list."""
    status, mid = await api_publish(port, channel, "seed", key)
    assert status == 200, status
    return mid


async def receive_all(subs, n, timeout, linger):
    """Wait (bounded) until every subscriber has n messages, then linger
    seconds more (a duplicate would arrive then), then stop them all. A
    shortfall is left for check_stream to describe."""
    try:
        await asyncio.gather(*(s.wait_count(n, timeout) for s in subs))
    except AssertionError as e:
        sys.stderr.write("%s\n" % e)
    await asyncio.sleep(linger)
    await asyncio.gather(*(s.stop() for s in subs))


def everywhere(t):
    """Every place of the topology a client can use: each instance, and HAProxy."""
    return [("ferry%d" % (i + 1), p) for i, p in enumerate(t.ferry_ports)] + [("lb", t.lb_port)]


def make_subs(places, channel, cursor, fallback, per_place=1):
    """One subscriber per (place, transport): place = (label, port)."""
    subs = []
    for label, port in places:
        for t in TRANSPORTS:
            for k in range(per_place):
                subs.append(SUBS[t]("%s-%s-%d" % (label, t, k), port, channel, cursor, fallback=fallback))
    return subs


async def start_all(subs, timeout=WAIT):
    """Start every subscriber; return them once all are subscribed."""
    subs = [s.start() for s in subs]
    await asyncio.wait_for(asyncio.gather(*(s.subscribed.wait() for s in subs)), timeout)
    return subs


async def ws_publish(port, pub, n, pause):
    """n publishes on "news" over one WebSocket, each acknowledged, recorded in pub."""
    w = await WsPublisher(port).open()
    for i in range(n):
        kind, mid = await w.publish("news", "ws-%d" % i)
        assert kind == "ack", mid
        pub.ok.append(("ws-%d" % i, mid, "ws"))
        await asyncio.sleep(pause)
    await w.close()


# ---------------------------------------------------------------- tests

def test_fanout_everywhere():
    """12 subscribers (3 instances + HAProxy, x WebSocket/SSE/poll) get every
    message from three kinds of publishers on different instances."""
    with topology.Topology(settings=SETTINGS, echo=False) as t:
        key, ports, lb = t.publish_key, t.ferry_ports, t.lb_port

        async def main():
            first = await seed(ports[0], key, "news")
            epoch, seq0 = split_id(first)
            subs = await start_all(make_subs(everywhere(t), "news", first, lb))
            pub = Published()

            async def api():
                for i in range(60):
                    data = "api-%d" % i if i % 7 else "api-%d\nsecond line \u00e9\u2603" % i
                    status, mid = await api_publish(ports[i % 3], "news", data, key)
                    assert status == 200, status
                    pub.ok.append((data, mid, "api"))
                    await asyncio.sleep(0.01)

            async def send():
                sp = SendPublisher(lb)
                for i in range(30):
                    status, ack = await sp.publish("news", "send-%d" % i)
                    assert (status, ack) == (200, i + 1), (status, ack)
                    pub.ok.append(("send-%d" % i, None, "send"))
                    await asyncio.sleep(0.02)

            await asyncio.gather(api(), ws_publish(ports[1], pub, 30, 0.02), send())
            await receive_all(subs, len(pub.ok), 30, 0.5)
            check_stream(subs, pub, seq0 + 1, epoch)
            for s in subs:
                assert s.connects == 1, "%s reconnected: %s" % (s.name, s.errors)
        asyncio.run(main())


def test_instance_killed_mid_stream():
    """SIGKILL one instance while messages flow: its clients (direct, and
    those HAProxy gave it) reconnect through HAProxy with their cursors."""
    with topology.Topology(settings=SETTINGS, echo=False) as t:
        key, ports, lb = t.publish_key, t.ferry_ports, t.lb_port
        victim = 0

        async def main():
            first = await seed(ports[1], key, "news")
            epoch, seq0 = split_id(first)
            direct = make_subs([("victim", ports[victim])], "news", first, lb, per_place=2)
            behind = make_subs([("lb", lb)], "news", first, lb, per_place=2)
            subs = await start_all(direct + behind)
            pub = Published()
            killed = asyncio.Event()

            async def api():
                survivors = [p for i, p in enumerate(ports) if i != victim]
                for i in range(150):
                    status, mid = await api_publish(survivors[i % 2], "news", "m-%d" % i, key)
                    assert status == 200, status
                    pub.ok.append(("m-%d" % i, mid, "api"))
                    if i == 60:
                        t.kill_ferry(victim, signal.SIGKILL)
                        killed.set()
                    await asyncio.sleep(0.02)

            await asyncio.gather(api(), ws_publish(ports[2], pub, 40, 0.07))
            assert killed.is_set()
            await receive_all(subs, len(pub.ok), 45, 0.5)
            check_stream(subs, pub, seq0 + 1, epoch)
            for s in direct:
                assert s.connects >= 2, "%s never reconnected" % s.name
            # the reconnects went through HAProxy, to the survivors
            assert topology.http_status(lb, "/ferry/healthz") == 200
            deadline = time.monotonic() + 10
            while t.lb_servers().get("ferry%d" % (victim + 1)) != "DOWN":
                assert time.monotonic() < deadline, t.lb_servers()
                await asyncio.sleep(0.2)
        asyncio.run(main())


def test_redis_restart_mid_stream():
    """Redis (append-only, fsync always) stops and starts again while
    messages flow: acknowledged ones arrive once, refused ones never."""
    with topology.Topology(settings=SETTINGS, echo=False) as t:
        key, ports, lb = t.publish_key, t.ferry_ports, t.lb_port

        async def main():
            first = await seed(ports[0], key, "news")
            epoch, seq0 = split_id(first)
            subs = await start_all(make_subs(everywhere(t), "news", first, lb))
            pub = Published()
            phase = ["up"]     # up -> stopping -> down -> starting -> up
            down_results = []  # (status) of publishes attempted entirely while Redis was down
            attempts = []      # refused publishes: (data, status, publisher, phase at start, phase at end)
            stop_pub = asyncio.Event()

            async def api():
                i = 0
                while not stop_pub.is_set():
                    data = "m-%d" % i
                    before = phase[0]
                    status, mid = await api_publish(ports[i % 3], "news", data, key, timeout=15)
                    after = phase[0]
                    if status == 200:
                        pub.ok.append((data, mid, "api"))
                    else:
                        assert status == 503, (data, status)
                        pub.failed.append((data, status, "api"))
                        attempts.append((data, status, "api", before, after))
                    if before == after == "down":
                        down_results.append(status)
                    i += 1
                    await asyncio.sleep(0.02)

            async def ws():
                # WebSocket publishes on an instance: refused ones get publish_failed
                w = await WsPublisher(ports[2]).open()
                i = 0
                while not stop_pub.is_set():
                    data = "ws-%d" % i
                    before = phase[0]
                    kind, what = await w.publish("news", data, timeout=15)
                    after = phase[0]
                    if kind == "ack":
                        pub.ok.append((data, what, "ws"))
                    else:
                        assert what == "publish_failed", what
                        pub.failed.append((data, what, "ws"))
                        attempts.append((data, what, "ws", before, after))
                    if before == after == "down":
                        down_results.append(kind)
                    i += 1
                    await asyncio.sleep(0.05)
                await w.close()

            async def operator():
                loop = asyncio.get_running_loop()
                while len(pub.ok) < 50:
                    await asyncio.sleep(0.05)
                phase[0] = "stopping"
                await loop.run_in_executor(None, t.stop_redis)
                phase[0] = "down"
                # every instance notices: healthz 503 (bounded)
                await wait_healthz(ports, 503, 15, "while Redis is down")
                await asyncio.sleep(2.0)  # publishes keep being attempted, and refused
                phase[0] = "starting"
                await loop.run_in_executor(None, t.start_redis)
                await wait_healthz(ports, 200, 20, "after Redis is back")
                phase[0] = "up"
                n = len(pub.ok)
                while len(pub.ok) < n + 50:
                    await asyncio.sleep(0.05)
                stop_pub.set()

            await asyncio.gather(api(), ws(), operator())
            assert down_results, "no publish was attempted while Redis was down"
            assert set(down_results) <= {503, "error"}, down_results
            await receive_all(subs, len(pub.ok), 45, 1.0)
            # Refused while Redis was down or starting: never stored. Refused
            # while it was shutting down: in doubt (Redis may have run and
            # persisted the publish, then exited before answering), so they
            # may arrive, at most once and alike for everyone.
            in_doubt = {d for d, _, _, before, after in attempts if "stopping" in (before, after)}
            refused = {d for d, _, _ in pub.failed} - in_doubt
            stored = sorted(in_doubt & {d for _, _, d in subs[0].received})
            if stored:
                sys.stderr.write("refused (503) as Redis stopped, yet stored and delivered: %r\n" % stored)
            check_stream(subs, pub, seq0 + 1, epoch, forbidden=refused, maybe=in_doubt)
            # WebSocket and SSE clients stayed connected through it all
            for s in subs:
                if s.transport != "poll":
                    assert s.connects == 1, "%s reconnected: %s" % (s.name, s.errors)
        asyncio.run(main())


def test_echo_service_through_haproxy():
    """A WebSocket client (through HAProxy) publishes on "echo"; the example
    service hears it on ferry:in:echo and its reply reaches every instance."""
    with topology.Topology(settings=SETTINGS) as t:
        async def main():
            watchers = []
            for p in t.ferry_ports:
                ws = await websockets.connect("ws://127.0.0.1:%d/ferry/ws?ch=echo" % p, open_timeout=WAIT)
                assert json.loads(await ws.recv())["type"] == "open"
                assert json.loads(await ws.recv())["type"] == "subscribed"
                watchers.append(ws)
            async with websockets.connect("ws://127.0.0.1:%d/ferry/ws?ch=echo" % t.lb_port,
                                          open_timeout=WAIT) as ws:
                assert json.loads(await ws.recv())["type"] == "open"
                assert json.loads(await ws.recv())["type"] == "subscribed"
                for i in range(3):
                    await ws.send(json.dumps({"type": "publish", "channel": "echo", "data": "q%d" % i,
                                              "ref": i + 1}))
                    reply = await expect_reply(ws, "echo", "q%d" % i)
                    for w in watchers:
                        await expect_reply(w, "echo", "q%d" % i)
                    assert reply["event"] == "reply"
            for w in watchers:
                await w.close()
        asyncio.run(main())


def test_haproxy_keeps_a_client_on_one_instance():
    """HAProxy sticks a client's sends and polls to one instance (by its
    client id): a retried send batch publishes once; a newer poll with the
    same client id completes the older one at once."""
    settings = dict(SETTINGS, FERRY_POLL_TIMEOUT="20s")
    with topology.Topology(settings=settings, echo=False) as t:
        lb = t.lb_port

        async def main():
            first = await seed(t.ferry_ports[0], t.publish_key, "sticky")
            for n in range(6):
                sp = SendPublisher(lb)
                ops = [{"seq": 1, "type": "publish", "channel": "sticky", "data": "once-%d" % n}]
                for _ in range(4):  # the same batch again, as after a lost answer
                    assert await sp.send(ops) == (200, 1)
            status, _, body = await http(lb, "GET", "/ferry/poll?ch=sticky," + first)
            datas = [m["data"] for m in json.loads(body)["messages"]]
            assert datas == ["once-%d" % n for n in range(6)], datas

            cursor = json.loads(body)["cursors"]["sticky"]
            for n in range(4):
                client = signed_client_id("c%023d" % n)
                # a first, quick poll (HAProxy records where the client went
                # when a request completes), then a held one, then a newer one
                status, _, _ = await http(lb, "GET", "/ferry/poll?ch=sticky&client=%s&t=0" % client)
                assert status == 200, status
                path = "/ferry/poll?ch=sticky,%s&client=%s" % (cursor, client)
                older = asyncio.ensure_future(http(lb, "GET", path + "&t=1", timeout=30))
                await asyncio.sleep(0.5)
                start = time.monotonic()
                newer = asyncio.ensure_future(http(lb, "GET", path + "&t=2", timeout=30))
                status, _, body = await asyncio.wait_for(older, 10)
                assert status == 200 and json.loads(body)["messages"] == [], (status, body)
                assert time.monotonic() - start < 8, "the older poll was not replaced (another instance?)"
                newer.cancel()
                try:
                    await newer
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
        asyncio.run(main())


def test_topology_script():
    """scripts/topology as a program: JSON, then shell lines; SIGTERM stops
    every process it started."""
    for fmt in ("--json", "--shell"):
        out = tempfile.mktemp(prefix="topology-", suffix=".out")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        p = subprocess.Popen([sys.executable, SCRIPT, fmt, "--out", out, "--set", "FERRY_DRAIN_WINDOW=200ms",
                              "--set", "FERRY_DRAIN_TIMEOUT=2s"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(out):
                assert p.poll() is None, p.communicate()
                assert time.monotonic() < deadline, "topology not ready in 60s"
                time.sleep(0.1)
            text = open(out).read()
            if fmt == "--json":
                info = json.loads(text)
                pids = [info["redis"]["pid"], info["haproxy"]["pid"], info["echo_service"]["pid"]]
                pids += [f["pid"] for f in info["ferryd"]]
                ports = [f["port"] for f in info["ferryd"]]
                lb, key = info["haproxy"]["port"], info["publish_key"]
                assert info["topology_pid"] == p.pid
                tmpdir = info["tmpdir"]
            else:
                vals = dict(line.split("=", 1) for line in text.splitlines())
                assert vals["TOPOLOGY_READY"] == "1"
                pids = [int(vals[k]) for k in ("REDIS_PID", "LB_PID", "ECHO_PID", "FERRY1_PID", "FERRY2_PID",
                                               "FERRY3_PID")]
                ports = [int(vals["FERRY%d_PORT" % i]) for i in (1, 2, 3)]
                lb, key = int(vals["LB_PORT"]), vals["FERRY_PUBLISH_KEY"]
                tmpdir = vals["TOPOLOGY_TMPDIR"]
                # it really is shell: sourcing it sets the same values
                sh = subprocess.run(["sh", "-c", '. "$1" && echo "$LB_PORT $FERRY_PUBLISH_KEY"', "sh", out],
                                    capture_output=True, timeout=10)
                assert sh.stdout.decode().split() == [str(lb), key], sh
            assert len(set(pids)) == 6
            for pid in pids:
                os.kill(pid, 0)
            for port in ports + [lb]:
                assert topology.http_status(port, "/ferry/healthz") == 200
            # the publish API wants the key, through HAProxy too
            assert asyncio.run(api_publish(lb, "t", "x"))[0] == 401
            assert asyncio.run(api_publish(lb, "t", "x", key))[0] == 200
            p.send_signal(signal.SIGTERM)
            rc = p.wait(timeout=40)
            stderr = p.stderr.read().decode()
            assert rc == 0, (rc, stderr)
            for pid in pids:
                try:
                    os.kill(pid, 0)
                    raise AssertionError("pid %d still alive after the topology stopped" % pid)
                except ProcessLookupError:
                    pass
            assert not os.path.exists(tmpdir), tmpdir
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
            for f in (out,):
                if os.path.exists(f):
                    os.unlink(f)


def test_docker_files_agree():
    """docker/ is what the topology runs: haproxy.cfg parses with compose's
    environment and with the topology's; compose uses the shared files."""
    haproxy = topology._which("HAPROXY", "haproxy", "/usr/sbin/haproxy")
    cfg = os.path.join(DOCKER, "haproxy.cfg")
    compose_env = {"LB_BIND": ":8080", "FERRY1_ADDR": "ferry1:8080", "FERRY2_ADDR": "ferry2:8080",
                   "FERRY3_ADDR": "ferry3:8080", "LB_RESOLVER": "127.0.0.11:53"}
    loop_env = {"LB_BIND": "127.0.0.1:1", "FERRY1_ADDR": "127.0.0.1:2", "FERRY2_ADDR": "127.0.0.1:3",
                "FERRY3_ADDR": "127.0.0.1:4", "LB_STATS_SOCKET": "/tmp/x.sock"}
    for env in (compose_env, loop_env):
        r = subprocess.run([haproxy, "-c", "-f", cfg], env=dict(os.environ, **env), capture_output=True,
                           timeout=20)
        assert r.returncode == 0, r.stderr.decode()
    compose = open(os.path.join(DOCKER, "docker-compose.yml")).read()
    for k, v in compose_env.items():
        assert "%s: %s" % (k, v) in compose or "%s: \"%s\"" % (k, v) in compose, (k, v)
    for shared in ("./ferry.env", "./redis.conf", "./haproxy.cfg"):
        assert shared in compose, shared
    settings = topology.read_env_file(os.path.join(DOCKER, "ferry.env"))
    assert settings.get("FERRY_CLIENT_PUBLISH") in ("1", "yes", "true", "on"), settings
    # ferryd starts with every setting in ferry.env
    with Ferry("--redis", "redis://127.0.0.1:%d/0" % free_port(), env=settings) as f:
        assert topology.http_status(f.port, "/ferry/healthz") == 503
    try:
        import yaml
    except ImportError:
        return
    doc = yaml.safe_load(compose)
    services = doc["services"]
    assert {"redis", "ferry1", "ferry2", "ferry3", "haproxy", "echo-service"} <= set(services), services.keys()


if __name__ == "__main__":
    require(REDIS_SERVER, topology._which("HAPROXY", "haproxy", "/usr/sbin/haproxy"), echo_service_path())
    run([test_fanout_everywhere, test_instance_killed_mid_stream, test_redis_restart_mid_stream,
         test_echo_service_through_haproxy, test_haproxy_keeps_a_client_on_one_instance, test_topology_script,
         test_docker_files_agree])
