#!/usr/bin/python3
"""test_access_log.py -- ferryd --access-log: a line per HTTP request.

A real ferryd, in front of legacy_app.py (stdlib, in this process) where a
test needs an app; clients are raw sockets, http.client and Debian's
python3-websockets. Each test reads the log file as an operator would and
checks the fields against what the client itself saw: the request line,
the status, the bytes it received, the time it waited, Referer and
User-Agent (escaped so that a client cannot forge a line), and that a
client that leaves before its answer is logged 499. SIGHUP reopens the
file after a rotation; "-" writes to standard output; a path that cannot
be opened stops ferryd at startup with exit 2.
"""
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder: legacy_app.py
from harness import FERRYD, Ferry, HTTPConnection, free_port, http_request, run  # noqa: E402
import legacy_app  # noqa: E402

import websockets  # noqa: E402

APP_PORT, APP = legacy_app.start()

LINE = re.compile(r'^(?P<ip>\S+) - - \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3}) '
                  r'(?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" (?P<secs>\d+\.\d{3})$')


def log_path():
    fd, path = tempfile.mkstemp(prefix="ferry-access-", suffix=".log")
    os.close(fd)
    os.unlink(path)  # ferryd creates it
    return path


def lines(path, n, timeout=5.0):
    """The log's lines once there are at least n (bounded wait), parsed."""
    deadline = time.monotonic() + timeout
    while True:
        text = open(path).read() if os.path.exists(path) else ""
        got = [ln for ln in text.split("\n") if ln]
        if len(got) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(got) >= n, "expected %d lines in the access log, got:\n%s" % (n, text)
    parsed = []
    for ln in got:
        m = LINE.match(ln)
        assert m, "not a combined-format line: %r" % ln
        parsed.append(m.groupdict())
    return parsed


def exchange(port, raw, timeout=5.0):
    """Send raw, read one response with Content-Length; returns its bytes."""
    with HTTPConnection(port, timeout) as c:
        c.send(raw)
        r = c.response(timeout=timeout)
        assert r.framing == "length", r
        return r.head + b"\r\n\r\n" + r.body


def test_own_routes():
    path = log_path()
    with Ferry("--access-log", path) as f:
        raw = (b"POST /ferry/publish/news HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               b"User-Agent: probe/1.0\r\n\r\nhello")
        answer = exchange(f.port, raw)
        # a client trying to forge a line, and a non-ASCII Referer
        raw = ('GET /ferry/nothing?q=1 HTTP/1.1\r\nHost: x\r\nReferer: http://r\u00e9f/\r\n'
               'User-Agent: a" 200 0 "-" "b\\\r\n\r\n').encode("utf-8")
        answer404 = exchange(f.port, raw)
        got = lines(path, 2)
    os.unlink(path)
    first, second = got
    assert first["ip"] == "127.0.0.1"
    assert first["request"] == "POST /ferry/publish/news HTTP/1.1", first
    assert first["status"] == "200" and int(first["bytes"]) == len(answer), (first, len(answer))
    assert first["agent"] == "probe/1.0" and first["referer"] == "-", first
    assert re.match(r"\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}$", first["time"]), first
    assert second["status"] == "404" and int(second["bytes"]) == len(answer404), second
    assert second["request"] == "GET /ferry/nothing?q=1 HTTP/1.1"
    assert second["agent"] == 'a\\x22 200 0 \\x22-\\x22 \\x22b\\x5C', second
    assert second["referer"] == "http://r\\xC3\\xA9f/", second


def test_proxied_and_pipelined():
    path = log_path()
    with Ferry("--access-log", path, "--upstream", "http://127.0.0.1:%d" % APP_PORT) as f:
        t0 = time.monotonic()
        with urllib.request.urlopen(f.url + "/slow?ms=300", timeout=10) as r:
            body = r.read()
            assert r.status == 200 and body == b"slept 300\n"
        waited = time.monotonic() - t0
        # two pipelined requests on one connection: two lines, in order
        raw = (b"GET /status?code=201 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /status?code=418 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = http_request(f.port, raw)
        got = lines(path, 3)
    os.unlink(path)
    slow, a, b = got
    assert slow["request"] == "GET /slow?ms=300 HTTP/1.1" and slow["status"] == "200", slow
    assert 0.3 <= float(slow["secs"]) <= waited + 0.01, (slow, waited)
    assert a["status"] == "201" and b["status"] == "418", (a, b)
    # the client's bytes are the two answers, exactly
    assert int(a["bytes"]) + int(b["bytes"]) == len(data), (a, b, len(data))
    assert data.index(b"HTTP/1.1 418") == int(a["bytes"]), (a, data[:200])


def test_streams_and_leavers():
    path = log_path()
    with Ferry("--access-log", path, "--poll-timeout", "20s") as f:
        async def ws():
            async with websockets.connect(f.ws_url + "/ferry/ws?ch=news",
                                          user_agent_header="ws-client/1") as c:
                await asyncio.wait_for(c.recv(), 5)
        asyncio.run(ws())
        # an SSE stream, read until its first event, then left
        with socket.create_connection(("127.0.0.1", f.port), timeout=5) as s:
            s.sendall(b"GET /ferry/sse?ch=news HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"\n\n" not in data.partition(b"\r\n\r\n")[2]:
                data += s.recv(65536)
        # a long-poll held, and the client gives up after 0.5 s
        with urllib.request.urlopen(f.url + "/ferry/poll?ch=news", timeout=5) as r:
            cursor = json.loads(r.read())["cursors"]["news"]
        with socket.create_connection(("127.0.0.1", f.port), timeout=5) as s:
            s.sendall(("GET /ferry/poll?ch=news,%s HTTP/1.1\r\nHost: x\r\n\r\n" % cursor).encode())
            time.sleep(0.5)
        got = lines(path, 4)
    os.unlink(path)
    wsl, sse, first_poll, held = got
    assert wsl["request"].startswith("GET /ferry/ws?ch=news ") and wsl["status"] == "101", wsl
    assert wsl["agent"] == "ws-client/1", wsl
    assert sse["request"].startswith("GET /ferry/sse?ch=news ") and sse["status"] == "200", sse
    assert first_poll["status"] == "200", first_poll
    assert held["status"] == "499" and held["bytes"] == "0", held
    assert 0.4 <= float(held["secs"]) <= 5, held


def test_rotation_stdout_and_bad_path():
    path = log_path()
    with Ferry("--access-log", path) as f:
        urllib.request.urlopen(f.url + "/ferry/negotiate", timeout=5).read()
        lines(path, 1)
        os.rename(path, path + ".1")
        f.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        urllib.request.urlopen(f.url + "/ferry/negotiate?after=rotation", timeout=5).read()
        after = lines(path, 1)
        before = lines(path + ".1", 1)
    assert len(before) == 1 and before[0]["request"] == "GET /ferry/negotiate HTTP/1.1", before
    assert len(after) == 1 and after[0]["request"] == "GET /ferry/negotiate?after=rotation HTTP/1.1"
    os.unlink(path)
    os.unlink(path + ".1")

    # "-": the lines go to standard output, the diagnostics to standard error
    port = free_port()
    p = subprocess.Popen([FERRYD, "--listen", "127.0.0.1:%d" % port, "--access-log", "-"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/ferry/negotiate" % port, timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "ferryd did not start"
                time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    out_lines = out.decode().splitlines()
    assert any(LINE.match(ln) and '"GET /ferry/negotiate HTTP/1.1" 200' in ln for ln in out_lines), out
    assert b"ready" in err and b"GET /ferry/negotiate" not in err, err

    # a path that cannot be opened: a clear error at startup
    p = subprocess.run([FERRYD, "--listen", "127.0.0.1:%d" % free_port(),
                        "--access-log", "/nonexistent-dir/access.log"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert b"cannot open --access-log /nonexistent-dir/access.log" in p.stderr, p.stderr


if __name__ == "__main__":
    try:
        run([test_own_routes, test_proxied_and_pipelined, test_streams_and_leavers,
             test_rotation_stdout_and_bad_path])
    finally:
        APP.stop()
