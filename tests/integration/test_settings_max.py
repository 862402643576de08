#!/usr/bin/python3
"""test_settings_max.py -- the settings that shape a client, at their largest value.

One ferryd runs with every such setting at the maximum --help gives it
(--max-subscriptions 1024, --max-headers 1024, --max-request-line 64K,
--max-header-bytes 1M, --max-body 64M, --ws-max-message 64M,
--poll-max-bytes 64M, --history-size 100000, ...), and each is exercised on
every transport that uses it:
  - 64 and then 1024 channels on the WebSocket, SSE and long-poll: every
    message published to each arrives, and the cursors resume on all of them
    (the WebSocket's ch=NAME,CURSOR, SSE's Last-Event-ID, the poll's cursors),
    resets too (SSE's Ferry-Reset names every channel);
  - the app's subscribe callback is asked about every one of 1024 channels,
    and a refusal of the last ones is obeyed on every transport;
  - a 64K request line and 1024 header fields (1M of them) are accepted on
    each transport's request, one more of each refused;
  - a 64M publish body and a 64M WebSocket message are taken, and a
    channel keeps 100,000 messages that one poll replays.
And one above each maximum is refused at start: ferryd exits non-zero and
says the range. (tests/unit/common/test_config.c checks every setting's
maximum at parse level.)
"""
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import FERRYD, Ferry, free_port, Publisher, run, SSEStream  # noqa: E402
import wsclient  # noqa: E402

SCALE = 5 if os.environ.get("FERRY_TEST_WRAPPER", "").strip() else 1  # slower under valgrind
WAIT = 20.0 * SCALE

# the settings that shape what one client may do or cost
CLIENT_SETTINGS = [
    "max-subscriptions", "max-headers", "max-request-line", "max-header-bytes", "max-body",
    "ws-max-message", "poll-max-bytes", "history-size", "out-queue-max", "sse-recycle-bytes",
    "rate-messages", "rate-messages-per-address", "max-connections-per-ip",
]
UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}


def help_ranges():
    """{name: (max as ferryd writes it, max in base units)} from --help."""
    text = subprocess.run([FERRYD, "--help"], capture_output=True, text=True, timeout=10).stdout
    out = {}
    for m in re.finditer(r"--([a-z-]+) [A-Z]+ .*\[[^;\]]*; [^ ]+ to ([0-9]+)([KMG]?)\]", text):
        out[m.group(1)] = (m.group(2) + m.group(3), int(m.group(2)) * UNITS[m.group(3)])
    return out


RANGES = help_ranges()
SUBS = RANGES["max-subscriptions"][1]          # 1024
MAX_ARGS = []
for name in CLIENT_SETTINGS:
    MAX_ARGS += ["--" + name, RANGES[name][0]]


def at_max(*extra):
    return Ferry(*(MAX_ARGS + ["--drain-window", "200ms"] + list(extra)),
                 startup_timeout=20.0)


def names(prefix, n):
    return ["%s%04d" % (prefix, i) for i in range(n)]


def publish_all(p, chans, tag):
    return {ch: p.publish(ch, "%s-%s" % (tag, ch)) for ch in chans}


def raw_status(port, head_lines, timeout=WAIT):
    """Send a request head (lines without CRLF); the status of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("\r\n".join(head_lines) + "\r\n\r\n").encode())
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in buf and time.monotonic() < deadline:
            b = s.recv(65536)
            if not b:
                break
            buf += b
        m = re.match(rb"HTTP/1\.1 (\d+)", buf)
        assert m, "no answer: %r" % buf[:200]
        return int(m.group(1))


# ---------------------------------------------------------------- start-up

def test_one_above_each_max_refused_at_start():
    """Each client setting one above its maximum: ferryd exits non-zero at
    once and its message gives the range."""
    for name in CLIENT_SETTINGS:
        text, value = RANGES[name]
        r = subprocess.run([FERRYD, "--listen", "127.0.0.1:%d" % free_port(),
                            "--" + name, str(value + 1)], capture_output=True, text=True, timeout=10)
        assert r.returncode != 0, (name, r)
        assert "--" + name in r.stderr and "to %s)" % text in r.stderr, (name, r.stderr)


def test_config_file_long_line_refused():
    """A config-file line longer than ferryd reads (4094 bytes) is refused:
    its tail was read as a line of its own, here a comment, so the secret
    was silently cut."""
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
        conf.write("jwt-secret " + "s" * (4095 - 11) + "#the-rest-of-the-secret\n")
        conf.flush()
        try:
            r = subprocess.run([FERRYD, "--listen", "127.0.0.1:%d" % free_port(),
                                "--config", conf.name], capture_output=True, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            raise AssertionError("ferryd started with a cut --jwt-secret")
        assert r.returncode != 0 and "longer than 4094 bytes" in r.stderr, r


def test_all_at_max_starts():
    with at_max() as f:
        assert raw_status(f.port, ["GET /ferry/healthz HTTP/1.1", "Host: x"]) == 200


# ---------------------------------------------------------------- channels and cursors

def sse_messages(s, n, timeout=WAIT):
    """The next n messages of a stream (controls skipped): [(data, id)]."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        b = s.next_event(max(0.01, deadline - time.monotonic()))
        if b.event != "ferry":
            got.append((b.data, b.id))
    return got


def check_sse(f, n):
    chans = names("sse%d-" % n, n)
    url = "/ferry/sse?" + "&".join("ch=" + ch for ch in chans)
    with Publisher(f.port) as p:
        publish_all(p, chans, "old")   # so the channels have an epoch to resume in
        with SSEStream(f.port, url, timeout=WAIT) as s:
            assert s.status == 200, s.head
            # the stream is open once every channel answered
            sent = publish_all(p, chans, "r1")
            got = sse_messages(s, n)
        assert sorted(d for d, _ in got) == sorted("r1-" + ch for ch in chans)
        last = got[-1][1]
        assert len(last.split(" ")) == n, "the id names %d cursors" % len(last.split(" "))
        assert set(last.split(" ")) == {"%s,%s" % kv for kv in sent.items()}
        # published while the EventSource was away: all of it comes back
        publish_all(p, chans, "r2")
        with SSEStream(f.port, url, headers={"Last-Event-ID": last}, timeout=WAIT) as s:
            assert s.status == 200, s.head
            got = sse_messages(s, n)
            assert sorted(d for d, _ in got) == sorted("r2-" + ch for ch in chans), \
                "lost on resume: %d of %d came back" % (len(got), n)
        # a cursor of another epoch on every channel: each reset is named
        stale = " ".join("%s,%s:1" % (ch, "0" * 8 if not mid.startswith("0" * 8) else "1" * 8)
                         for ch, mid in sent.items())
        with SSEStream(f.port, url, headers={"Last-Event-ID": stale}, timeout=WAIT) as s:
            assert s.status == 200, s.head
            resets = s.headers.get("ferry-reset", "")
            assert sorted(resets.split(", ")) == sorted(ch + "=epoch" for ch in chans), \
                "Ferry-Reset names %d of %d channels" % (len(resets.split(", ")), n)
        # the same, as a query parameter (event-source-polyfill)
        with SSEStream(f.port, url + "&lastEventId=" + last.replace(" ", "+").replace(",", "%2C"),
                       timeout=WAIT) as s:
            got = sse_messages(s, n)
            assert sorted(d for d, _ in got) == sorted("r2-" + ch for ch in chans)


def test_sse_64_channels():
    with at_max() as f:
        check_sse(f, 64)


def test_sse_max_channels():
    with at_max() as f:
        check_sse(f, SUBS)


def test_sse_invalid_last_event_id_refused():
    """A Last-Event-ID that is not a cursor list is refused, not ignored."""
    with at_max() as f:
        with SSEStream(f.port, "/ferry/sse?ch=a", headers={"Last-Event-ID": "a,x,y"}) as s:
            assert s.status == 400, s.head


def poll_json(port, query, timeout=WAIT):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("GET /ferry/poll?%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   % query).encode())
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            b = s.recv(1 << 20)
            if not b:
                break
            buf += b
    head, _, body = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:300]
    return json.loads(body)


def check_poll(f, n):
    chans = names("poll%d-" % n, n)
    with Publisher(f.port) as p:
        publish_all(p, chans, "old")
        first = poll_json(f.port, "&".join("ch=" + ch for ch in chans))
        assert len(first["cursors"]) == n
        sent = publish_all(p, chans, "r1-" + "x" * 1000)  # 1 MB in all: over 256K
        a = poll_json(f.port, "&".join("ch=%s,%s" % kv for kv in first["cursors"].items()))
        assert sorted(m["data"] for m in a["messages"]) == \
            sorted("r1-" + "x" * 1000 + "-" + ch for ch in chans), len(a["messages"])
        assert not a["more"] and a["cursors"] == sent, "cursors come back on every channel"
        stale = {ch: ("0" * 8 if not mid.startswith("0" * 8) else "1" * 8) + ":1"
                 for ch, mid in sent.items()}
        a = poll_json(f.port, "&".join("ch=%s,%s" % kv for kv in stale.items()))
        assert sorted(r["channel"] for r in a["resets"]) == sorted(chans)


def test_poll_64_channels():
    with at_max() as f:
        check_poll(f, 64)


def test_poll_max_channels():
    with at_max() as f:
        check_poll(f, SUBS)


async def ws_messages(ws, n, timeout=WAIT):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        m = await wsclient.recv_json(ws, max(0.01, deadline - time.monotonic()))
        if m["type"] == "message":
            got.append(m)
    return got


def check_ws(f, n):
    chans = names("ws%d-" % n, n)

    async def main():
        with Publisher(f.port) as p:
            publish_all(p, chans, "old")
            ws = await wsclient.connect(f, "?" + "&".join("ch=" + ch for ch in chans))
            subs = {}
            while len(subs) < n:
                m = await wsclient.recv_json(ws, WAIT)
                assert m["type"] == "subscribed", m
                subs[m["channel"]] = m["cursor"]
            sent = publish_all(p, chans, "r1")
            got = await ws_messages(ws, n)
            assert sorted(m["data"] for m in got) == sorted("r1-" + ch for ch in chans)
            await ws.close()
            publish_all(p, chans, "r2")
            ws = await wsclient.connect(f, "?" + "&".join("ch=%s,%s" % kv for kv in sent.items()))
            got = await ws_messages(ws, n)
            assert sorted(m["data"] for m in got) == sorted("r2-" + ch for ch in chans)
            await ws.close()
    wsclient.arun(main(), WAIT * 3)


def test_ws_64_channels():
    with at_max() as f:
        check_ws(f, 64)


def test_ws_max_channels():
    with at_max() as f:
        check_ws(f, SUBS)


def test_one_channel_over_max_refused():
    """SUBS + 1 channels: a 400 on every transport, nothing cut silently."""
    with at_max() as f:
        q = "&".join("ch=" + ch for ch in names("over-", SUBS + 1))
        for path in ("/ferry/sse", "/ferry/poll", "/ferry/ws"):
            assert raw_status(f.port, ["GET %s?%s HTTP/1.1" % (path, q), "Host: x",
                                       "Upgrade: websocket", "Connection: Upgrade",
                                       "Sec-WebSocket-Version: 13",
                                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]) == 400, path


# ---------------------------------------------------------------- the subscribe callback

class App:
    """Answers ferry's subscribe questions: 403 for channels in deny."""
    lock = threading.Lock()
    asked = []
    deny = set()


class AppHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        with App.lock:
            App.asked.append(body["channel"])
            status = 403 if body["channel"] in App.deny else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class AppServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096

    def handle_error(self, request, client_address):
        pass


def test_callback_asked_for_every_channel():
    """A poll, an EventSource and a WebSocket on 1024 channels that each
    need the app's say-so: the app is asked about all 1024, and its refusal
    of one past the 64th is obeyed (it was once never asked)."""
    app = AppServer(("127.0.0.1", 0), AppHandler)
    threading.Thread(target=app.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        with at_max("--upstream", "http://127.0.0.1:%d" % app.server_address[1],
                    "--callback", "subscribe:cb-*=/sub", "--upstream-timeout", "30s") as f:
            for path in ("/ferry/poll", "/ferry/sse"):
                chans = names("cb-%s-" % path[7:], SUBS)
                q = "&".join("ch=" + ch for ch in chans)
                with App.lock:
                    App.asked.clear()
                    App.deny = {chans[-1]}
                assert raw_status(f.port, ["GET %s?%s HTTP/1.1" % (path, q), "Host: x"]) == 403, \
                    path + ": the refusal of the last channel was not obeyed"
                with App.lock:
                    App.deny = set()
                    App.asked.clear()
                if path.endswith("poll"):
                    a = poll_json(f.port, q)
                    assert len(a["cursors"]) == SUBS
                else:
                    with SSEStream(f.port, path + "?" + q, timeout=WAIT) as s:
                        assert s.status == 200, s.head
                with App.lock:
                    assert sorted(App.asked) == sorted(chans), \
                        "%s: the app was asked about %d of %d" % (path, len(App.asked), SUBS)

            chans = names("cb-ws-", SUBS)
            with App.lock:
                App.asked.clear()
                App.deny = {chans[-1]}

            async def main():
                ws = await wsclient.connect(f, "?" + "&".join("ch=" + ch for ch in chans))
                subscribed, forbidden = set(), []
                while len(subscribed) + len(forbidden) < SUBS:
                    m = await wsclient.recv_json(ws, WAIT)
                    if m["type"] == "subscribed":
                        subscribed.add(m["channel"])
                    elif m["type"] == "error":
                        forbidden.append(m)
                assert subscribed == set(chans[:-1]) and len(forbidden) == 1, forbidden
                await ws.close()
            wsclient.arun(main(), WAIT * 2)
            with App.lock:
                assert sorted(App.asked) == sorted(chans)
    finally:
        app.shutdown()
        app.server_close()


# ---------------------------------------------------------------- request size

def test_request_line_and_headers_at_max():
    """A 64K request target and 1024 header fields (most of 1M bytes) on
    each transport's request; one byte or one field more is refused."""
    line_max = RANGES["max-request-line"][1]
    nhdr = RANGES["max-headers"][1]
    hbytes = RANGES["max-header-bytes"][1]
    ws_head = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
    with at_max() as f:
        for path, extra, ok in (("/ferry/poll?ch=a&pad=", [], 200),
                                ("/ferry/sse?ch=a&pad=0&x=", [], 200),
                                ("/ferry/ws?ch=a&x=", ws_head, 101)):
            target = path + "y" * (line_max - len(path))
            assert len(target) == line_max
            assert raw_status(f.port, ["GET %s HTTP/1.1" % target, "Host: x"] + extra) == ok, path
            assert raw_status(f.port, ["GET %sy HTTP/1.1" % target, "Host: x"] + extra) == 414, path
            fixed = ["Host: x"] + extra
            pad = (hbytes * 15 // 16) // (nhdr - len(fixed))  # near 1M in all
            many = ["X-Pad-%04d: %s" % (i, "v" * (pad - 14)) for i in range(nhdr - len(fixed))]
            assert raw_status(f.port, ["GET %s HTTP/1.1" % path] + fixed + many) == ok, path
            assert raw_status(f.port, ["GET %s HTTP/1.1" % path] + fixed + many
                              + ["X-One-More: 1"]) == 431, path


# ---------------------------------------------------------------- message sizes and history

def post(port, path, body, timeout=WAIT):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                   % (path, len(body))).encode())
        try:
            s.sendall(body)
        except OSError:
            pass  # refused before the body was read
        buf = b""
        while b"\r\n" not in buf:
            b = s.recv(65536)
            if not b:
                break
            buf += b
        return int(buf.split(b" ")[1])


def test_largest_body_and_ws_message():
    """A 64M publish body is taken (64M + 1 refused 413); a 64M WebSocket
    message is taken and echoed whole."""
    body_max = RANGES["max-body"][1]
    msg_max = RANGES["ws-max-message"][1]
    with at_max("--echo") as f:
        assert post(f.port, "/ferry/publish/big", b"b" * body_max) == 200
        assert post(f.port, "/ferry/publish/big", b"b" * (body_max + 1)) == 413

        async def main():
            import websockets
            ws = await websockets.connect(f.ws_url + "/ferry/echo", max_size=None,
                                          ping_interval=None)
            wsclient.OPEN.append(ws.transport.abort)
            await ws.send(b"m" * msg_max)
            back = await asyncio.wait_for(ws.recv(), WAIT)
            assert len(back) == msg_max
            await ws.close()
        wsclient.arun(main(), WAIT * 3)


def test_history_at_max():
    """--history-size 100000: a poll from the first message's cursor gets
    the other 99,999 in one answer (--poll-max-bytes 64M), in order."""
    n = RANGES["history-size"][1]
    with at_max() as f:
        req = b"POST /ferry/publish/hist HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n"
        ids = []
        with socket.create_connection(("127.0.0.1", f.port), timeout=WAIT) as s:
            buf = b""
            while len(ids) < n:
                batch = min(500, n - len(ids))
                s.sendall(b"".join(req + b"%06d" % (len(ids) + i) for i in range(batch)))
                want = len(ids) + batch
                while len(ids) < want:
                    end = buf.find(b"\r\n\r\n")
                    clen = int(re.search(rb"Content-Length: (\d+)", buf[:end]).group(1)) \
                        if end >= 0 else -1
                    if end >= 0 and len(buf) >= end + 4 + clen:
                        assert buf.startswith(b"HTTP/1.1 200"), buf[:200]
                        ids.append(json.loads(buf[end + 4:end + 4 + clen])["id"])
                        buf = buf[end + 4 + clen:]
                        continue
                    b = s.recv(1 << 20)
                    assert b, "closed after %d answers" % len(ids)
                    buf += b
        first = ids[0]
        a = poll_json(f.port, "ch=hist," + first)
        data = [m["data"] for m in a["messages"]]
        assert data == ["%06d" % i for i in range(1, n)], (len(data), data[:3], data[-3:])
        assert not a["more"] and not a["resets"]


if __name__ == "__main__":
    run([
        test_one_above_each_max_refused_at_start,
        test_config_file_long_line_refused,
        test_all_at_max_starts,
        test_sse_64_channels,
        test_sse_max_channels,
        test_sse_invalid_last_event_id_refused,
        test_poll_64_channels,
        test_poll_max_channels,
        test_ws_64_channels,
        test_ws_max_channels,
        test_one_channel_over_max_refused,
        test_callback_asked_for_every_channel,
        test_request_line_and_headers_at_max,
        test_largest_body_and_ws_message,
        test_history_at_max,
    ])
