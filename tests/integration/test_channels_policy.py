#!/usr/bin/python3
"""test_channels_policy.py -- who makes channels in the embedded backend.

Only a publish makes a channel with history, and only those count against
--max-channels (docs/CONFIGURATION.md, "History and channels"). Subscribing
to a channel nobody published to holds it cheaply without counting, so
anonymous subscribers on many channels (WebSockets holding them, long-polls
that come and go) can no longer use up --max-channels and get the app's own
publish refused with `503 too many channels` (issue 13, defect 5). The app's
publishes beyond --max-channels still get that documented refusal, and the
channels subscribers hold but nobody publishes to stay bounded (watched ones
by their subscribers, unwatched ones by --max-channels), as
ferry_channels_unpublished shows.
"""
import asyncio
import http.client
import json
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Ferry, metrics, raw_http, run  # noqa: E402
from wsclient import arun, connect, recv_json  # noqa: E402

KEY = "app-secret-key-for-the-test"
MAX = 100


def app_publish(port, channel, data="x"):
    """The app's publish with the right key: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/ferry/publish/" + channel, body=data.encode(),
                     headers={"Authorization": "Bearer " + KEY})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def polls(port, names, workers=16):
    """Anonymous long-polls, 64 ch= each, that come and go: their statuses."""
    statuses = []
    lock = threading.Lock()
    batches = [names[i:i + 64] for i in range(0, len(names), 64)]

    def worker():
        while True:
            with lock:
                if not batches:
                    return
                batch = batches.pop()
            status, _, _ = raw_http(port, "GET", "/ferry/poll?" + "&".join("ch=" + n for n in batch),
                                    timeout=5)
            with lock:
                statuses.append(status)
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "polls still running after 30 s"
    return statuses


def test_subscribers_cannot_deny_the_app():
    with Ferry("--max-channels", str(MAX), "--publish-key", KEY, "--poll-timeout", "200ms") as f:
        async def main():
            # 4 anonymous WebSockets hold 64 channels each: 256 > --max-channels
            held = []
            for w in range(4):
                names = ["w%d-%d" % (w, i) for i in range(64)]
                ws = await connect(f, "?" + "&".join("ch=" + n for n in names))
                kinds = [(await recv_json(ws))["type"] for _ in names]
                assert kinds == ["subscribed"] * 64, kinds
                held.append(ws)
            # and 1,280 more channels from polls that came and went
            loop = asyncio.get_running_loop()
            statuses = await loop.run_in_executor(
                None, polls, f.port, ["p%d" % i for i in range(20 * 64)])
            assert statuses == [200] * 20, statuses

            # the app's publish to a channel of its own goes through
            status, body = app_publish(f.port, "app-news", "hello")
            assert status == 200, (status, body)
            # and to a channel a subscriber waits on: it arrives
            status, body = app_publish(f.port, "w0-5", "for w0")
            assert status == 200, (status, body)
            m = await recv_json(held[0])
            assert (m["type"], m["channel"], m["data"]) == ("message", "w0-5", "for w0"), m

            m = metrics(f.port)
            assert m["ferry_channels"] == 2, m["ferry_channels"]
            # held ones cost what their subscribers do; unwatched ones are
            # kept up to --max-channels
            unpublished = m["ferry_channels_unpublished"]
            assert 255 <= unpublished <= 255 + MAX, unpublished

            # the app fills --max-channels itself: then the documented refusal
            for i in range(MAX - 2):
                status, body = app_publish(f.port, "app-%d" % i)
                assert status == 200, (i, status, body)
            status, body = app_publish(f.port, "one-too-many")
            assert status == 503 and "too many channels" in body, (status, body)
            status, body = app_publish(f.port, "w1-1")
            assert status == 503 and "too many channels" in body, (status, body)
            assert metrics(f.port)["ferry_channels"] == MAX
            # channels that exist go on, and subscribing still works when full
            assert app_publish(f.port, "app-news", "again")[0] == 200
            ws = await connect(f, "?ch=late-one")
            assert (await recv_json(ws))["type"] == "subscribed"
            status, _, body = raw_http(f.port, "GET", "/ferry/poll?ch=late-two", timeout=5)
            assert status == 200 and json.loads(body)["messages"] == [], (status, body)
        arun(main(), 60)


if __name__ == "__main__":
    run([test_subscribers_cannot_deny_the_app])
