#!/usr/bin/python3
"""test_smuggling.py -- ferryd --upstream at the edge: request smuggling and
answers that reach the wrong client.

Behind ferry runs a tiny raw-socket app (RecordingApp, below) that keeps every
byte it receives, per connection, and answers each request with a body naming
the request's path and the connection. Each case sends ferry something a
second parser could read another way (CL+TE, TE+CL, duplicate and list
Content-Length, unknown and stacked Transfer-Encodings, obs-fold, bare CR/LF,
NUL/CTL in headers, pipelining after a refusal, refused and body-carrying
WebSocket handshakes, HEAD answers with a body, late bytes from the app, a
pooled connection that dies), and checks three things: what ferry answers;
that nothing reaches the app that ferry did not frame (every connection's
bytes parse strictly as back-to-back HTTP/1.1 requests, and no marker of a
refused request is among them); and that every answer a client gets names
that client's own request. ferryd must stay alive throughout (/ferry/healthz
at the end).
"""
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder
from harness import Ferry, free_port, run  # noqa: E402

TCHAR = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
BODY_TIMEOUT_MS = 700


class RecordingApp:
    """An HTTP/1.1 app on raw sockets: one thread per connection, every
    byte kept in self.conns[id]. Paths choose misbehaviour:
      /ws404      a WebSocket handshake refused with 404
      /ws101      a handshake accepted; then an echo of raw bytes
      /headlate   (HEAD) the head with Content-Length: 7, then, 300 ms later,
                  a second, unasked-for answer "SMUGGLE"
      /late       an answer, then 100 ms later an unasked-for one
      /slow       the answer only 2 x BODY_TIMEOUT_MS after the head,
                  without reading the body
      /arm-drop   answered; the next request on this connection is read and
                  the connection closed without an answer
    anything else: 200 with body "path=P conn=N"."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = {}
        self.stop = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        n = 0
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            n += 1
            with self.lock:
                self.conns[n] = bytearray()
            threading.Thread(target=self.serve, args=(s, n), daemon=True).start()

    def all_bytes(self):
        with self.lock:
            return {k: bytes(v) for k, v in self.conns.items()}

    def serve(self, s, n):
        s.settimeout(10)
        buf = bytearray()
        drop_next = False
        deadline = time.monotonic() + 30

        def fill():
            b = s.recv(65536)
            if not b:
                raise EOFError
            with self.lock:
                self.conns[n] += b
            buf.extend(b)

        try:
            while time.monotonic() < deadline:
                while b"\r\n\r\n" not in buf:
                    fill()
                head, _, rest = bytes(buf).partition(b"\r\n\r\n")
                buf[:] = rest
                lines = head.split(b"\r\n")
                method, path, _ = lines[0].split(b" ", 2)
                fields = {}
                for line in lines[1:]:
                    k, _, v = line.partition(b":")
                    fields[k.strip().lower()] = v.strip()
                if drop_next:
                    return  # closed without an answer
                if path == b"/slow":
                    time.sleep(2 * BODY_TIMEOUT_MS / 1000)
                    self.answer(s, path, n)
                    return
                # the body, as ferry framed it
                if b"content-length" in fields:
                    want = int(fields[b"content-length"])
                    while len(buf) < want:
                        fill()
                    del buf[:want]
                elif fields.get(b"transfer-encoding") == b"chunked":
                    while True:
                        while b"\r\n" not in buf:
                            fill()
                        line, _, rest = bytes(buf).partition(b"\r\n")
                        size = int(line, 16)
                        while len(rest) < size + 2:
                            fill()
                            line, _, rest = bytes(buf).partition(b"\r\n")
                        buf[:] = rest[size + 2:]
                        if size == 0:
                            break
                if path == b"/ws404":
                    s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here\n")
                elif path == b"/ws101":
                    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\n\r\n")
                    while True:  # echo raw
                        if buf:
                            s.sendall(bytes(buf))
                            buf.clear()
                        fill()
                elif path == b"/headlate":
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n")
                    time.sleep(0.3)
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nSMUGGLE")
                elif path == b"/late":
                    self.answer(s, path, n)
                    time.sleep(0.1)
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nSMUGGLE")
                else:
                    if path == b"/arm-drop":
                        drop_next = True
                    self.answer(s, path, n, head=method == b"HEAD")
        except (EOFError, OSError, ValueError):
            pass
        finally:
            s.close()

    @staticmethod
    def answer(s, path, n, head=False):
        body = b"path=%s conn=%d" % (path, n)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), b"" if head else body))


APP = RecordingApp()


def check_framed(stream):
    """Every byte the app got is a well-formed HTTP/1.1 request, one after
    another: CRLF lines, token names, no control bytes in values, at most one
    framing field, a body of exactly its declared length. Returns the
    requests' (method, path) pairs; a WebSocket tunnel's bytes after a 101
    (/ws101) are not HTTP and end the check."""
    reqs = []
    while stream:
        assert b"\r\n\r\n" in stream, "an unterminated head at the app: %r" % stream[:200]
        head, _, stream = stream.partition(b"\r\n\r\n")
        assert b"\n" not in head.replace(b"\r\n", b"") and b"\r" not in head.replace(b"\r\n", b""), \
            "a bare CR or LF at the app: %r" % head
        lines = head.split(b"\r\n")
        m = re.match(rb"^([A-Z]+) (/\S*|\*) HTTP/1\.1$", lines[0])
        assert m, "a request line ferry did not write: %r" % lines[0]
        reqs.append((m.group(1), m.group(2)))
        cl = te = None
        hosts = 0
        for line in lines[1:]:
            name, sep, value = line.partition(b": ")
            assert sep and TCHAR.match(name), "a header line ferry did not write: %r" % line
            assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value), "a CTL at the app: %r" % line
            low = name.lower()
            if low == b"content-length":
                assert cl is None, "two Content-Length at the app"
                cl = int(value)
            elif low == b"transfer-encoding":
                assert te is None and value == b"chunked", "Transfer-Encoding %r at the app" % value
                te = value
            elif low == b"host":
                hosts += 1
        assert hosts == 1, "%d Host headers at the app: %r" % (hosts, head)
        assert not (cl is not None and te), "CL and TE at the app"
        if m.group(2) == b"/ws101":
            break
        if cl is not None:
            # short only as the connection's last bytes: ferry cut it (a 408)
            stream = stream[cl:]
        elif te:
            while True:
                line, sep, stream = stream.partition(b"\r\n")
                assert sep and re.match(rb"^[0-9a-f]+$", line), "a chunk line: %r" % line
                size = int(line, 16)
                assert stream[size:size + 2] == b"\r\n"
                stream = stream[size + 2:]
                if size == 0:
                    assert stream.startswith(b"\r\n"), "trailers at the app"
                    stream = stream[2:]
                    break
    return reqs


def exchange(port, raw, timeout=3.0, until_close=True, quiet=0.5):
    """Send raw, read until ferry closes (or is quiet for `quiet` s after
    something arrived, or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        got = b""
        deadline = time.monotonic() + timeout
        s.settimeout(quiet)
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                if got and not until_close:
                    break
                continue
            except ConnectionResetError:
                break
            if not b:
                break
            got += b
        return got


def statuses(resp):
    return [int(x) for x in re.findall(rb"HTTP/1\.1 (\d{3}) ", resp)]


def app_saw(marker):
    return any(marker in b for b in APP.all_bytes().values())


def ferry():
    return Ferry("--upstream", "http://127.0.0.1:%d" % APP.port,
                 "--body-timeout", "%dms" % BODY_TIMEOUT_MS)


REFUSED = [
    # (name, request): each must be a 400 that the app never sees, and the
    # request pipelined behind it (GET /pipelined-NAME) must not reach it either
    ("cl-te", b"POST /m-cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("te-cl", b"POST /m-te-cl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Length: 6\r\n\r\n0\r\n\r\n"),
    ("cl-dup", b"POST /m-cl-dup HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
               b"Content-Length: 3\r\n\r\nabc"),
    ("cl-list", b"POST /m-cl-list HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc"),
    ("cl-plus", b"POST /m-cl-plus HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc"),
    ("te-gzip", b"GET /m-te-gzip HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ("te-xchunked", b"POST /m-te-x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
                    b"0\r\n\r\n"),
    ("te-stacked", b"POST /m-te-stack HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ("te-twice", b"POST /m-te-twice HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("te-http10", b"POST /m-te-10 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n"),
    ("bare-cr", b"GET /m-cr HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
    ("nul-value", b"GET /m-nul HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
    ("ctl-value", b"GET /m-ctl HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n"),
    ("nul-name", b"GET /m-nulname HTTP/1.1\r\nHost: x\r\nX\x00A: b\r\n\r\n"),
    ("two-hosts", b"GET /m-two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("no-host", b"GET /m-no-host HTTP/1.1\r\n\r\n"),
    ("ws-no-host", b"GET /m-ws-no-host HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n"),
    ("ws-body", b"GET /m-ws-body HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\nContent-Length: 6\r\n\r\nabcdef"),
    ("absolute-other-host", b"GET http://elsewhere/m-abs-other HTTP/1.1\r\nHost: x\r\n\r\n"),
]


def test_refused():
    failed = []
    with ferry() as f:
        for name, raw in REFUSED:
            marker = raw.split(b" ", 2)[1].rsplit(b"/", 1)[1]
            pipelined = b"GET /pipelined-%s HTTP/1.1\r\nHost: x\r\n\r\n" % name.encode()
            if f.proc.poll() is not None:
                failed.append((name, "ferryd is dead"))
                continue
            resp = exchange(f.port, raw + pipelined)
            if (statuses(resp) != [400] or b"connection: close" not in resp.lower() or
                    app_saw(marker) or app_saw(b"/pipelined-" + name.encode())):
                failed.append((name, resp))
        alive = f.proc.poll() is None
        time.sleep(0.2)
        f.proc.poll() is None or failed.append(("alive", "ferryd died"))
    assert alive and not failed, failed


def test_bare_lf():
    """A bare LF as the line end: refused, or framed by ferry (CRLF) at the app."""
    with ferry() as f:
        resp = exchange(f.port, b"GET /bare-lf HTTP/1.1\nHost: x\n\n", until_close=False)
        assert statuses(resp) in ([400], [200]), resp
        if statuses(resp) == [200]:
            assert b"path=/bare-lf" in resp


def test_obs_fold():
    """An obs-fold is unfolded (RFC 9112 5.2): the app gets one line."""
    with ferry() as f:
        resp = exchange(f.port, b"GET /fold HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
                        until_close=False)
        assert b"path=/fold" in resp, resp
        assert app_saw(b"\r\nX-A: a b\r\n")


def test_late_answer_after_refusal_does_not_crash():
    """The head reached the app (it is well framed) and ferry answered 408
    for the slow body; the app's answer comes after: ferryd must live."""
    with ferry() as f:
        resp = exchange(f.port, b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
                        timeout=3 * BODY_TIMEOUT_MS / 1000 + 2)
        assert statuses(resp) == [408], resp
        time.sleep(2 * BODY_TIMEOUT_MS / 1000)  # the app answers meanwhile
        assert f.proc.poll() is None, f.output()[-2000:]
        ok = exchange(f.port, b"GET /ferry/healthz HTTP/1.1\r\nHost: x\r\n\r\n", until_close=False)
        assert statuses(ok) == [200], ok


def test_refused_upgrade_is_not_a_tunnel():
    with ferry() as f:
        hs = (b"GET /ws404 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        with socket.create_connection(("127.0.0.1", f.port), timeout=3) as s:
            s.sendall(hs)
            got = b""
            while b"not here\n" not in got:
                b = s.recv(4096)
                assert b, got
                got += b
            assert statuses(got) == [404], got
            # still HTTP: a valid request is answered, raw bytes are refused
            s.sendall(b"GET /after-404 HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while b"path=/after-404" not in got:
                b = s.recv(4096)
                assert b, got
                got += b
            s.sendall(b"\x00\x01RAW-AFTER-REFUSAL\r\n\r\n")
            s.settimeout(2)
            rest = b""
            try:
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    rest += b
            except socket.timeout:
                pass
            assert statuses(rest) == [400], rest
        time.sleep(0.2)
        assert not app_saw(b"RAW-AFTER-REFUSAL")
        # and an accepted handshake is a tunnel
        with socket.create_connection(("127.0.0.1", f.port), timeout=3) as s:
            s.sendall(hs.replace(b"/ws404", b"/ws101") + b"early")
            got = b""
            deadline = time.monotonic() + 3
            while b"early" not in got and time.monotonic() < deadline:
                b = s.recv(4096)
                assert b, got
                got += b
            assert got.startswith(b"HTTP/1.1 101 "), got
            assert b"upgrade: websocket" in got.lower() and b"early" in got, got
            s.sendall(b"\x00raw bytes")
            got = b""
            while b"raw bytes" not in got:
                b = s.recv(4096)
                assert b, got
                got += b


def test_absolute_form():
    with ferry() as f:
        resp = exchange(f.port, b"GET http://x/ferry/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                        until_close=False)
        assert statuses(resp) == [200] and b'"status":"ok"' in resp, resp
        assert not app_saw(b"/ferry/healthz")
        resp = exchange(f.port, b"GET http://x/abs-app?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                        until_close=False)
        assert b"path=/abs-app?q=1" in resp, resp
        assert app_saw(b"GET /abs-app?q=1 HTTP/1.1\r\n")
        assert not app_saw(b"http://x/abs-app")


def test_head_answer_with_late_body():
    """The app sends an unasked-for answer after its HEAD answer: the next
    client (on a connection the pool would reuse) must get its own answer."""
    with ferry() as f:
        resp = exchange(f.port, b"HEAD /headlate HTTP/1.1\r\nHost: x\r\n\r\n", until_close=False,
                        quiet=0.1)
        assert statuses(resp) == [200] and resp.endswith(b"\r\n\r\n"), resp
        nxt = exchange(f.port, b"GET /next-after-head HTTP/1.1\r\nHost: x\r\n\r\n",
                       until_close=False)
        assert b"SMUGGLE" not in nxt and b"path=/next-after-head" in nxt, nxt


def test_late_bytes_after_answer():
    with ferry() as f:
        resp = exchange(f.port, b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n", until_close=False)
        assert b"path=/late" in resp and b"SMUGGLE" not in resp, resp
        time.sleep(0.4)
        nxt = exchange(f.port, b"GET /next-after-late HTTP/1.1\r\nHost: x\r\n\r\n",
                       until_close=False)
        assert b"SMUGGLE" not in nxt and b"path=/next-after-late" in nxt, nxt


def test_dying_pooled_connection():
    """A pooled connection the app closes on the next request: a GET is sent
    again on a fresh one, a POST (even an empty one) is not."""
    with ferry() as f:
        for method, again in ((b"POST", False), (b"GET", True)):
            first = exchange(f.port, b"GET /arm-drop HTTP/1.1\r\nHost: x\r\n\r\n",
                             until_close=False)
            assert b"path=/arm-drop" in first, first
            path = b"/dies-" + method.lower()
            resp = exchange(f.port, b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                            % (method, path), until_close=False)
            seen = sum(b.count(b"%s %s " % (method, path)) for b in APP.all_bytes().values())
            if again:
                assert statuses(resp) == [200] and b"path=" + path in resp, resp
                assert seen == 2, seen
            else:
                assert statuses(resp) == [502], resp
                assert seen == 1, "the POST reached the app %d times" % seen


def test_pipelined_answers_in_order():
    with ferry() as f:
        raw = b"".join(b"GET /pipe-%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
        resp = exchange(f.port, raw, until_close=False)
        assert re.findall(rb"path=/pipe-(\d)", resp) == [b"0", b"1", b"2", b"3", b"4"], resp


def test_app_saw_only_framed_requests():
    """Last: everything every connection of the app received, strictly."""
    for n, stream in APP.all_bytes().items():
        check_framed(stream)
    with ferry() as f:
        ok = exchange(f.port, b"GET /ferry/healthz HTTP/1.1\r\nHost: x\r\n\r\n", until_close=False)
        assert statuses(ok) == [200], ok


if __name__ == "__main__":
    run([test_refused, test_bare_lf, test_late_answer_after_refusal_does_not_crash,
         test_obs_fold, test_refused_upgrade_is_not_a_tunnel, test_absolute_form, test_head_answer_with_late_body,
         test_late_bytes_after_answer, test_dying_pooled_connection,
         test_pipelined_answers_in_order, test_app_saw_only_framed_requests])
