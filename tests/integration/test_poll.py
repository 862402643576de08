#!/usr/bin/python3
"""test_poll.py -- long-polling end to end.

A poll answers at once when it has something (a first poll's position,
missed messages, a reset) and is held otherwise until a message arrives or
--poll-timeout passes. Clients follow the cursors of each answer; the byte
cap splits a backlog over several polls ("more"); a newer poll of the same
client completes the older one; JSONP only when enabled; the drain answers
held polls 503. Finally a plain curl loop in a shell follows the cursors
across a killed request and misses nothing.
"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import client_id, Ferry, metric, Publisher, run  # noqa: E402

WAIT = 5.0


# ---------------------------------------------------------------- helpers

class Answer:
    def __init__(self, status, headers, raw, elapsed, sent_at, done_at):
        self.status, self.headers, self.raw = status, headers, raw
        self.elapsed, self.sent_at, self.done_at = elapsed, sent_at, done_at

    @property
    def json(self):
        return json.loads(self.raw)

    def __repr__(self):
        return "Answer(%d, %.2fs, %r)" % (self.status, self.elapsed, self.raw[:300])


def poll(port, query, timeout=WAIT, headers=None):
    """One GET /ferry/poll?QUERY on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        t0 = time.monotonic()
        conn.request("GET", "/ferry/poll?" + query, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        t1 = time.monotonic()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        return Answer(r.status, hdrs, raw, t1 - t0, t0, t1)
    finally:
        conn.close()


def poll_ok(port, query, **kw):
    a = poll(port, query, **kw)
    assert a.status == 200, a
    return a.json


def cursor_query(cursors, extra=""):
    q = "&".join("ch=%s,%s" % (ch, cur) for ch, cur in cursors.items())
    return q + ("&" + extra if extra else "")


def wait_held(port, n, timeout=WAIT):
    """Until n polls are open on the server (so they were sent and held)."""
    deadline = time.monotonic() + timeout
    while metric(port, 'ferry_connections{transport="poll"}') < n:
        assert time.monotonic() < deadline, "the poll never reached the server"
        time.sleep(0.02)


class Background(threading.Thread):
    """A poll in a thread; .answer after join()."""

    def __init__(self, port, query, timeout=WAIT):
        super().__init__(daemon=True)
        self.port, self.query, self.timeout = port, query, timeout
        self.answer = None
        self.error = None
        self.start()

    def run(self):
        try:
            self.answer = poll(self.port, self.query, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 -- reported by result()
            self.error = e

    def result(self, timeout=WAIT):
        self.join(timeout)
        assert not self.is_alive(), "poll not answered within %ss" % timeout
        if self.error:
            raise self.error
        return self.answer


# ---------------------------------------------------------------- tests

def test_first_poll_answers_at_once():
    with Ferry() as f:
        p = Publisher(f.port)
        last = [p.publish("chat", "c%d" % i) for i in range(3)][-1]
        a = poll(f.port, "ch=news&ch=chat")
        assert a.status == 200, a
        assert a.elapsed < 2, a
        body = a.json
        # the position, and no old messages
        assert body["messages"] == [], body
        assert body["cursors"]["chat"] == last, body
        assert re.match(r"^[0-9a-f]{8}:0$", body["cursors"]["news"]), body
        assert set(body["cursors"]) == {"news", "chat"}, body
        assert body["resets"] == [] and body["more"] is False, body
        p.close()


def test_poll_with_cursor_gets_missed_messages():
    with Ferry() as f:
        p = Publisher(f.port)
        start = poll_ok(f.port, "ch=news")["cursors"]
        ids = [p.publish("news", "m%d" % i) for i in range(4)]
        ids.append(p.publish("news", "with event", event="upd"))
        a = poll(f.port, cursor_query(start))
        assert a.status == 200 and a.elapsed < 2, a
        body = a.json
        assert body["messages"][0] == {"type": "message", "channel": "news", "id": ids[0], "data": "m0"}
        assert body["messages"][4] == {"type": "message", "channel": "news", "id": ids[4],
                                       "event": "upd", "data": "with event"}
        assert [m["id"] for m in body["messages"]] == ids, body
        assert body["cursors"] == {"news": ids[-1]}, body
        assert body["more"] is False
        # from the middle
        body = poll_ok(f.port, "ch=news," + ids[2])
        assert [m["id"] for m in body["messages"]] == ids[3:], body
        p.close()


def test_held_until_publish():
    with Ferry() as f:
        p = Publisher(f.port)
        cur = poll_ok(f.port, "ch=news")["cursors"]
        bg = Background(f.port, cursor_query(cur), timeout=10)
        wait_held(f.port, 1)
        time.sleep(0.5)
        assert bg.is_alive(), "a poll with the current cursor was not held"
        t_pub = time.monotonic()
        mid = p.publish("news", "wake up")
        a = bg.result()
        assert a.status == 200, a
        assert a.sent_at < t_pub < a.done_at, "not held across the publish"
        assert a.done_at - t_pub < 1.5, "answered %.2fs after the publish" % (a.done_at - t_pub)
        assert a.elapsed >= 0.5, a
        body = a.json
        assert [m["data"] for m in body["messages"]] == ["wake up"], body
        assert body["cursors"] == {"news": mid}, body
        p.close()


def test_held_poll_two_channels():
    with Ferry() as f:
        p = Publisher(f.port)
        cur = poll_ok(f.port, "ch=news&ch=chat")["cursors"]
        bg = Background(f.port, cursor_query(cur))
        wait_held(f.port, 1)
        mid = p.publish("chat", "hello")
        body = bg.result().json
        assert [m["id"] for m in body["messages"]] == [mid], body
        assert body["cursors"] == {"news": cur["news"], "chat": mid}, body
        p.close()


def test_poll_timeout():
    with Ferry("--poll-timeout", "1s") as f:
        cur = poll_ok(f.port, "ch=news&ch=chat")["cursors"]
        a = poll(f.port, cursor_query(cur))
        assert a.status == 200, a
        assert 0.8 <= a.elapsed < 3, a
        body = a.json
        assert body == {"messages": [], "cursors": cur, "resets": [], "more": False}, body


def test_headers():
    with Ferry() as f:
        conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=WAIT)
        conn.request("GET", "/ferry/poll?ch=news&t=12345")
        r = conn.getresponse()
        raw = r.read()
        assert r.status == 200
        h = {k.lower(): v for k, v in r.getheaders()}
        assert int(h["content-length"]) == len(raw), (h, raw)
        assert "transfer-encoding" not in h, h
        assert h["content-type"].split(";")[0] == "application/json", h
        cc = [x.strip() for x in h["cache-control"].split(",")]
        assert "no-store" in cc and "no-cache" in cc, h
        assert h["pragma"] == "no-cache", h
        assert "access-control-allow-origin" not in h, h
        json.loads(raw)
        conn.close()


def test_byte_cap():
    with Ferry("--poll-max-bytes", "2K") as f:
        p = Publisher(f.port)
        cur = poll_ok(f.port, "ch=news")["cursors"]
        ids = [p.publish("news", "%02d" % i + "b" * 498) for i in range(20)]
        got, polls, mores = [], 0, 0
        while len(got) < 20:
            polls += 1
            assert polls <= 20, "too many polls: %d messages after %d" % (len(got), polls)
            a = poll(f.port, cursor_query(cur))
            assert a.status == 200 and a.elapsed < 2, a
            body = a.json
            msgs = body["messages"]
            assert msgs, "an answer with nothing while messages remain"
            assert len(a.raw) < 2048 + 600, len(a.raw)  # the cap, plus the envelope
            got += msgs
            # the cursor is at the last included message
            assert body["cursors"] == {"news": msgs[-1]["id"]}, body
            if len(got) < 20:
                assert body["more"] is True, body
                mores += 1
            cur = body["cursors"]
        assert body["more"] is False, body
        assert [m["id"] for m in got] == ids, "lost, duplicated or reordered"
        assert [m["data"][:2] for m in got] == ["%02d" % i for i in range(20)]
        assert polls >= 5, polls  # 20 x ~560 bytes in 2 KB answers
        print("     20 messages in %d polls" % polls)
        p.close()


def test_newest_poll_wins():
    with Ferry() as f:  # --poll-timeout 25s: only the newer poll can end the first
        p = Publisher(f.port)
        cur = poll_ok(f.port, "ch=news")["cursors"]
        first = Background(f.port, cursor_query(cur, "client=" + client_id(f.port, "tab-1")), timeout=10)
        wait_held(f.port, 1)
        time.sleep(0.2)
        assert first.is_alive()
        # another client's poll does not disturb it
        other = Background(f.port, cursor_query(cur, "client=" + client_id(f.port, "tab-2")), timeout=10)
        wait_held(f.port, 2)
        time.sleep(0.2)
        assert first.is_alive(), "a poll of another client ended the first"
        t_second = time.monotonic()
        second = Background(f.port, cursor_query(cur, "client=" + client_id(f.port, "tab-1")), timeout=10)
        a = first.result()
        assert a.status == 200, a
        assert a.done_at - t_second < 1.5, a
        assert a.json == {"messages": [], "cursors": cur, "resets": [], "more": False}, a
        # the second is held, and gets the next message; so does the other client
        time.sleep(0.3)
        assert second.is_alive(), "the newer poll was not held"
        mid = p.publish("news", "for the newest")
        b = second.result()
        assert [m["id"] for m in b.json["messages"]] == [mid], b
        assert [m["id"] for m in other.result().json["messages"]] == [mid]
        p.close()


def test_reset_too_old():
    with Ferry("--history-size", "5", "--history-age", "0") as f:
        p = Publisher(f.port)
        ids = [p.publish("news", "h%d" % i) for i in range(10)]
        a = poll(f.port, "ch=news," + ids[1])
        assert a.status == 200 and a.elapsed < 2, a
        assert a.headers.get("ferry-reset") == "news=too_old", a.headers
        body = a.json
        assert body["resets"] == [{"channel": "news", "reason": "too_old"}], body
        assert [m["id"] for m in body["messages"]] == ids[5:], body
        assert body["cursors"] == {"news": ids[-1]}, body
        # and from there on it is a normal poll
        bg = Background(f.port, cursor_query(body["cursors"]))
        wait_held(f.port, 1)
        mid = p.publish("news", "next")
        assert [m["id"] for m in bg.result().json["messages"]] == [mid]
        p.close()


def test_reset_epoch_two_channels():
    with Ferry() as f:
        p = Publisher(f.port)
        ids = [p.publish("news", "n%d" % i) for i in range(3)]
        chat = p.publish("chat", "c")
        epoch = ids[0].split(":")[0]
        other = ("0" if epoch[0] != "0" else "1") + epoch[1:]
        a = poll(f.port, "ch=news,%s:2&ch=chat,%s" % (other, chat))
        assert a.status == 200 and a.elapsed < 2, a
        assert a.headers.get("ferry-reset") == "news=epoch", a.headers
        body = a.json
        assert body["resets"] == [{"channel": "news", "reason": "epoch"}], body
        assert [m["id"] for m in body["messages"]] == ids, body
        assert body["cursors"] == {"news": ids[-1], "chat": chat}, body
        p.close()


def test_jsonp():
    with Ferry("--jsonp") as f:
        # a <script> on ferry's own page: JSONP needs its page's origin
        # shown (test_cross_site.py), here by the Referer a browser sends
        page = {"Referer": "http://127.0.0.1:%d/ferry/demo" % f.port}
        a = poll(f.port, "ch=news&callback=cb", headers=page)
        assert a.status == 200, a
        assert a.headers["content-type"].split(";")[0] == "application/javascript", a.headers
        assert a.raw.startswith(b"/**/cb("), a.raw
        assert a.raw.endswith(b");"), a.raw
        body = json.loads(a.raw[len(b"/**/cb("):-2])
        assert "news" in body["cursors"], body
        assert int(a.headers["content-length"]) == len(a.raw)
        a = poll(f.port, "ch=news&callback=jQuery123_456.done$", headers=page)
        assert a.status == 200 and a.raw.startswith(b"/**/jQuery123_456.done$("), a
        for bad in ("alert(1)", "a%3Bb", "", "x%20y", "a" * 65):
            a = poll(f.port, "ch=news&callback=" + bad, headers=page)
            assert a.status == 400, (bad, a)
        # plain JSON still works
        a = poll(f.port, "ch=news")
        assert a.status == 200 and a.raw.startswith(b"{"), a
    with Ferry() as f:
        a = poll(f.port, "ch=news&callback=cb")
        assert a.status == 400, a
        assert b"cb(" not in a.raw, a


def test_errors():
    with Ferry() as f:
        for q in ("", "ch=", "ch=bad%20name", "ch=a&ch=a", "ch=a,", "ch=a&client=bad!",
                  "ch=a&client=", "ch=a&client=" + "x" * 65, "t=1"):
            a = poll(f.port, q)
            assert a.status == 400, (q, a)
        conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=WAIT)
        conn.request("POST", "/ferry/poll?ch=a", body=b"")
        r = conn.getresponse()
        r.read()
        assert r.status == 405, r.status
        conn.close()
        a = poll(f.port, "ch=a", headers={"Origin": "http://evil.test"})
        assert a.status == 403, a
    with Ferry("--allow-origin", "http://app.test") as f:
        a = poll(f.port, "ch=a", headers={"Origin": "http://app.test"})
        assert a.status == 200, a
        assert a.headers.get("access-control-allow-origin") == "http://app.test", a.headers
    with Ferry("--transports", "websocket,sse") as f:
        assert poll(f.port, "ch=a").status == 404


def test_overlong_parameters():
    """A parameter too long to be valid is refused like any other invalid
    one, wherever it is in the query, not skipped as if it were absent."""
    wrong = []
    with Ferry("--jsonp") as f:
        for q in ("ch=a&ch=" + "c" * 300,            # an over-long channel, last
                  "ch=" + "c" * 300 + "&ch=a",       # ... and first
                  "ch=a&client=" + "x" * 100,        # an over-long client id
                  "ch=a&callback=" + "f" * 100):     # an over-long JSONP callback
            a = poll(f.port, q, headers={"Sec-Fetch-Site": "same-origin"})
            if a.status != 400:
                wrong.append((re.sub(r"(.)\1{20,}", r"\1...", q), a.status, a.raw[:80]))
        assert not wrong, "accepted: %r" % wrong


def test_drain_answers_held_poll():
    with Ferry("--drain-window", "1s", "--drain-timeout", "5s", "--reconnect-delay", "3s") as f:
        cur = poll_ok(f.port, "ch=news")["cursors"]
        bg = Background(f.port, cursor_query(cur), timeout=10)
        wait_held(f.port, 1)
        time.sleep(0.2)
        t0 = time.monotonic()
        f.signal(signal.SIGTERM)
        a = bg.result()
        assert a.status == 503, a
        assert a.done_at - t0 < 2, a
        retry = a.headers.get("retry-after")
        assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 4, a.headers
        assert f.wait(10) == 0


CURL_LOOP = r'''
# follow the cursors of a long-poll with plain curl; each answer is appended
# to $OUT; a failed request (killed, refused) is retried from the same cursor
cursor="$1"
i=0
while [ $i -lt $MAX_ITER ]; do
    i=$((i + 1))
    curl -s -S --max-time 10 -o "$TMP" "$URL?ch=news,$cursor" &
    echo $! > "$PIDFILE"
    wait $!
    rc=$?
    echo "iteration $i rc $rc" >> "$LOG"
    if [ $rc -ne 0 ]; then
        sleep 0.1
        continue
    fi
    cat "$TMP" >> "$OUT"
    echo >> "$OUT"
    next=$(sed -n 's/.*"cursors":{"news":"\([^"]*\)"}.*/\1/p' "$TMP")
    [ -n "$next" ] && cursor="$next"
    if grep -q '"data":"m30"' "$TMP"; then
        exit 0
    fi
done
exit 1
'''


def test_curl_loop():
    if shutil.which("curl") is None:
        print("     SKIP: curl is not installed")
        return
    with Ferry("--poll-timeout", "1s") as f, tempfile.TemporaryDirectory() as tmp:
        p = Publisher(f.port)
        start = poll_ok(f.port, "ch=news")["cursors"]["news"]
        env = dict(os.environ, URL=f.url + "/ferry/poll", MAX_ITER="200",
                   TMP=os.path.join(tmp, "answer"), OUT=os.path.join(tmp, "out"),
                   LOG=os.path.join(tmp, "log"), PIDFILE=os.path.join(tmp, "pid"))
        loop = subprocess.Popen(["sh", "-c", CURL_LOOP, "sh", start], env=env)
        try:
            ids = []
            killed = False
            for i in range(1, 31):
                ids.append(p.publish("news", "m%d" % i))
                time.sleep(0.1)
                if i == 15:
                    # kill the curl that is waiting right now
                    wait_held(f.port, 1)
                    with open(env["PIDFILE"]) as pf:
                        pid = int(pf.read().strip())
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed = True
                    except ProcessLookupError:
                        pass
            rc = loop.wait(timeout=30)
        finally:
            if loop.poll() is None:
                loop.kill()
                loop.wait(5)
        with open(env["LOG"]) as lf:
            log = lf.read()
        assert rc == 0, "the curl loop did not see m30:\n" + log
        assert killed and re.search(r"rc (?!0\b)\d+", log), "no curl was killed mid-poll:\n" + log
        got = []
        with open(env["OUT"]) as of:
            for line in of:
                if line.strip():
                    got += json.loads(line)["messages"]
        assert [m["id"] for m in got] == ids, "lost, duplicated or reordered: %s" % \
            [m["data"] for m in got]
        print("     curl loop: %d requests" % log.count("iteration"))
        p.close()


def test_reset_on_every_channel_past_64():
    """--max-subscriptions above 64: each channel's cursor comes back and a
    reset on every channel fits (the answer once used arrays of 64)."""
    n = 70
    with Ferry("--max-subscriptions", str(n)) as f:
        p = Publisher(f.port)
        ids = {"c%d" % i: p.publish("c%d" % i, "m") for i in range(n)}
        stale = {}
        for ch, mid in ids.items():
            epoch = mid.split(":")[0]
            stale[ch] = ("0" if epoch[0] != "0" else "1") + epoch[1:] + ":1"
        a = poll(f.port, cursor_query(stale))
        assert a.status == 200, a
        body = a.json
        assert len(body["resets"]) == n, body["resets"]
        assert {r["channel"] for r in body["resets"]} == set(ids), body["resets"]
        assert body["cursors"] == ids, body["cursors"]
        p.close()


def test_reset_on_empty_channel_answers_at_once():
    """A cursor the channel cannot use, on a channel with nothing kept: the
    reset is the answer, at once (it was held for the whole --poll-timeout)."""
    with Ferry("--poll-timeout", "10s") as f:
        for cursor, reason in (("0badcafe:5", "epoch"), ("zzz", "invalid")):
            a = poll(f.port, "ch=empty-%s,%s" % (reason, cursor), timeout=8)
            assert a.status == 200 and a.elapsed < 2.0, a
            assert [(r["channel"], r["reason"]) for r in a.json["resets"]] == \
                [("empty-" + reason, reason)], a
            assert a.headers.get("ferry-reset") == "empty-%s=%s" % (reason, reason), a.headers
        # with a usable cursor on the same empty channel, the poll is held
        cur = poll_ok(f.port, "ch=empty-epoch")["cursors"]["empty-epoch"]
        t0 = time.monotonic()
        try:
            poll(f.port, "ch=empty-epoch," + cur, timeout=1.0)
            assert False, "a usable cursor on an empty channel was answered at once"
        except OSError:
            assert time.monotonic() - t0 >= 0.9


if __name__ == "__main__":
    run([
        test_first_poll_answers_at_once,
        test_poll_with_cursor_gets_missed_messages,
        test_held_until_publish,
        test_held_poll_two_channels,
        test_poll_timeout,
        test_headers,
        test_byte_cap,
        test_newest_poll_wins,
        test_reset_too_old,
        test_reset_epoch_two_channels,
        test_reset_on_every_channel_past_64,
        test_reset_on_empty_channel_answers_at_once,
        test_jsonp,
        test_errors,
        test_overlong_parameters,
        test_drain_answers_held_poll,
        test_curl_loop,
    ])
