"""harness.py -- start a real ferryd on a free loopback port for a test
(tests/lib/, beside harness.js for the Node tests).

Every test binds only to 127.0.0.1, on a port the kernel just handed out, and
every wait is bounded. FERRYD points at the binary (make check sets it);
FERRY_TEST_WRAPPER (e.g. "valgrind --error-exitcode=99 --leak-check=full")
runs ferryd under a tool. Beside Ferry: raw HTTP requests (http_request,
raw_http, and HTTPConnection: one client connection with its receive buffer,
reading responses framed by Content-Length, chunked or close, and reused for
keep-alive), SSEStream (a text/event-stream read block by block, over an
HTTPConnection; EventStreamParser is the same parser for asyncio readers),
wait_port(), /ferry/metrics parsed (metrics, metric), Closing (`with` for
the tests' own clients), and run(), the runner of a test file's functions.
"""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FERRYD = os.environ.get("FERRYD") or os.path.join(HERE, "..", "..", "ferryd")

ID_RE = re.compile(r"^([0-9a-f]{8}):(\d+)$")  # a message id: epoch:seq


class Closing:
    """Mixin for a client with close(): `with client:` closes it at the end."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, what="listener"):
    """Wait until 127.0.0.1:port accepts a connection; fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("no %s on %d within %.1fs" % (what, port, timeout))


class Ferry:
    """A ferryd process. Use as a context manager; .url, .ws_url, .port.
    nofile=N starts it with an open-files limit of N (soft and hard)."""

    def __init__(self, *args, env=None, startup_timeout=10.0, nofile=None):
        self.port = free_port()
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) for ferryd, or None: inherited
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.startup_timeout = startup_timeout
        self.proc = None
        self.log = tempfile.NamedTemporaryFile(prefix="ferryd-", suffix=".log", delete=False)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def ws_url(self):
        return "ws://127.0.0.1:%d" % self.port

    def start(self):
        for key in [k for k in _issued if k[0] == self.port]:
            del _issued[key]  # issued by an earlier ferryd on this port
        wrapper = shlex.split(os.environ.get("FERRY_TEST_WRAPPER", ""))
        cmd = wrapper + [FERRYD, "--listen", "127.0.0.1:%d" % self.port] + self.args
        limit = None
        if self.nofile:
            import resource
            n = self.nofile
            limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))  # noqa: E731
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                     preexec_fn=limit)
        deadline = time.monotonic() + self.startup_timeout * (10 if wrapper else 1)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ferryd exited at startup:\n" + self.output())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("ferryd did not start listening:\n" + self.output())

    def output(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout=20):
        """SIGTERM, wait, and fail loudly if ferryd crashed or a tool complained."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise AssertionError("ferryd did not exit within %ss of SIGTERM" % timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        rc = self.stop()
        out = self.output()
        os.unlink(self.log.name)
        if exc_type is None:
            assert "AddressSanitizer" not in out and "runtime error" not in out, out
            assert rc == 0, "ferryd exited with %r:\n%s" % (rc, out[-4000:])
        elif out:
            sys.stderr.write("---- ferryd log ----\n" + out[-4000:] + "\n")
        return False


_issued = {}

# Tests that run several instances give them this --client-id-secret
# (FERRY_CLIENT_ID_SECRET) and sign ids themselves with signed_client_id().
TEST_CLIENT_ID_SECRET = "ferry-tests-client-ids"


def signed_client_id(name, secret=TEST_CLIENT_ID_SECRET):
    """The client id an instance with --client-id-secret SECRET would issue
    (see proxy/core/auth.c), derived from name."""
    import hashlib
    import hmac
    key = hmac.new(secret.encode(), b"ferry client id v1", hashlib.sha256).digest()
    rnd = hashlib.sha256(name.encode()).digest()[:12].hex()
    return rnd + "-" + hmac.new(key, rnd.encode(), hashlib.sha256).digest()[:12].hex()


def client_id(port, name="default", source=None):
    """A client id ferryd's negotiate issued (signed: POST send and client=
    take no other), one per (port, name), so tests keep naming clients."""
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_-]{1,64}$", name) \
            or re.match(r"^[0-9a-f]{24}-[0-9a-f]{24}$", name):
        return name  # a malformed id stays malformed; an issued one stays
    key = (port, name)
    if key not in _issued:
        status, _, raw = raw_http(port, "GET", "/ferry/negotiate", source=source)
        assert status == 200, (status, raw)
        _issued[key] = json.loads(raw)["client"]
    return _issued[key]


def http_request(port, raw, timeout=5.0):
    """Send raw bytes, return everything the server sends until it closes
    (or timeout): for tests of exact HTTP behaviour."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)


def raw_http(port, method, path, headers=None, body=b"", source=None, timeout=5.0):
    """One request on a fresh connection, optionally from another local
    address (source). Returns (status, headers with lower-case names, body):
    the body up to Content-Length; for a 101 or an event stream nothing (it
    is not waited for); otherwise what arrived with the head."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1:%d" % port]
    lines += ["%s: %s" % kv for kv in (headers or {}).items()]
    if body or method == "POST":
        lines.append("Content-Length: %d" % len(body))
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    with s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\r\n\r\n" not in buf:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            b = s.recv(65536)
            if not b:
                break
            buf += b
        head, _, rest = buf.partition(b"\r\n\r\n")
        text = head.decode("latin-1")
        assert text.startswith("HTTP/1.1 "), "no HTTP answer: %r" % buf
        status = int(text.split(" ")[1])
        hdrs = {}
        for line in text.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(rest) < n:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                b = s.recv(65536)
                if not b:
                    break
                rest += b
            rest = rest[:n]
        elif status == 101 or hdrs.get("content-type", "").startswith("text/event-stream"):
            rest = b""
        return status, hdrs, rest


# ---------------------------------------------------------------- raw HTTP connection

class Response:
    """A response head as HTTPConnection (or parse_head) read it; body and
    framing once the body is read. fields: [(name, value)] as sent;
    h: {lower-case name: [values]}; headers: {lower-case name: last value}."""

    def __init__(self, status, reason, fields, head=b""):
        self.status, self.reason, self.fields, self.head = status, reason, fields, head
        self.h = {}
        for k, v in fields:
            self.h.setdefault(k.lower(), []).append(v)
        self.headers = {k: vals[-1] for k, vals in self.h.items()}
        self.body = b""
        self.complete = None   # body framing ended properly (None: not read yet)
        self.framing = None    # "none", "length", "chunked" or "close"

    def get(self, name, default=None):
        """The field's values joined with ", " (default when absent)."""
        vals = self.h.get(name.lower())
        return ", ".join(vals) if vals else default

    def __repr__(self):
        return "<%d %s %r body=%r>" % (self.status, self.reason, self.fields, self.body[:120])


def parse_head(head):
    """A response head (bytes, without the blank line) as a Response."""
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"^HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
    assert m, "bad status line %r (stray bytes before it?)" % lines[0]
    fields = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.append((name.strip(), value.strip()))
    return Response(int(m.group(1)), m.group(2) or "", fields, head)


def dechunk(data):
    """The payload of a complete chunked body (bytes after the head)."""
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        n = int(size_line.split(b";")[0], 16)
        if n == 0:
            break
        out, data = out + data[:n], data[n + 2:]
    return out


class HTTPConnection(Closing):
    """One raw client connection with a receive buffer (buf) and HTTP/1.1
    response parsing: send() bytes, then response() (head and body, framed by
    Content-Length, chunked, close, or none for HEAD/1xx/204/304), as often
    as the connection is kept alive. Every read is bounded: fill() raises
    socket.timeout (TimeoutError) at its deadline; a reset counts as EOF."""

    def __init__(self, port, timeout=10.0, sock=None, rcvbuf=None):
        if sock is None:
            sock = socket.socket()
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            try:
                sock.connect(("127.0.0.1", port))
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def fill(self, deadline):
        """Receive more into buf; False at EOF; socket.timeout past deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed; buffered %r" % self.buf[-300:])
        self.sock.settimeout(remaining)
        try:
            b = self.sock.recv(1 << 18)
        except ConnectionResetError:
            b = b""
        if not b:
            self.eof = True
            return False
        self.buf += b
        return True

    def read_head(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            try:
                if not self.fill(deadline):
                    raise AssertionError("connection closed before a full response head; got %r" % self.buf[:300])
            except socket.timeout:
                raise AssertionError("no response head within %.1fs; got %r" % (timeout, self.buf[:300]))
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return parse_head(head)

    def line(self, deadline):
        """One CRLF-terminated line (without it), or None at EOF."""
        while b"\r\n" not in self.buf:
            if not self.fill(deadline):
                return None
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def chunks(self, timeout):
        """A chunked body as (arrival time, data) per chunk, then (time, None)
        after the last chunk and trailer; it just stops (without None) if
        the connection closes first, after what there was of a cut chunk."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(deadline)
            if line is None:
                return
            size = int(line.split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while True:
                    t = self.line(deadline)
                    if t is None:
                        return
                    if t == b"":
                        yield time.monotonic(), None
                        return
            while len(self.buf) < size + 2:
                if not self.fill(deadline):
                    if self.buf[:size]:
                        yield time.monotonic(), self.buf[:size]
                    self.buf = b""
                    return
            piece, self.buf = self.buf[:size], self.buf[size + 2:]
            yield time.monotonic(), piece

    def iter_body(self, r, method="GET", timeout=10.0):
        """Yield the body of response r piece by piece as it arrives; sets
        r.framing and r.complete (False: the connection ended first)."""
        deadline = time.monotonic() + timeout
        te = (r.get("transfer-encoding") or "").lower()
        if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
            r.framing, r.complete = "none", True
            return
        if "chunked" in te:
            r.framing, r.complete = "chunked", False
            for _, piece in self.chunks(max(0.0, deadline - time.monotonic())):
                if piece is None:
                    r.complete = True
                    return
                yield piece
        elif r.get("content-length") is not None:
            left = int(r.get("content-length"))
            r.framing, r.complete = "length", False
            while left > 0:
                if not self.buf and not self.fill(deadline):
                    return
                piece, self.buf = self.buf[:left], self.buf[left:]
                left -= len(piece)
                yield piece
            r.complete = True
        else:
            r.framing, r.complete = "close", False
            while True:
                if self.buf:
                    piece, self.buf = self.buf, b""
                    yield piece
                if not self.fill(deadline):
                    r.complete = True  # close-delimited: EOF is the end
                    return

    def response(self, method="GET", timeout=10.0, allow_truncated=False):
        """One whole response (a Response with .body); fails if it does not
        arrive within timeout or (unless allow_truncated) is cut short."""
        r = self.read_head(timeout)
        pieces = []
        try:
            for p in self.iter_body(r, method, timeout):
                pieces.append(p)
        except socket.timeout:
            raise AssertionError("response body not complete within %.1fs: %r + %d bytes" % (
                timeout, r, sum(map(len, pieces))))
        r.body = b"".join(pieces)
        if not r.complete and not allow_truncated:
            raise AssertionError("connection closed inside the response body: %r" % r)
        return r

    def wait_eof(self, timeout=5.0):
        """Return the bytes received until EOF; fail if the connection stays open."""
        deadline = time.monotonic() + timeout
        try:
            while self.fill(deadline):
                pass
        except socket.timeout:
            raise AssertionError("connection still open after %.1fs (got %r)" % (timeout, self.buf[:200]))
        b, self.buf = self.buf, b""
        return b

    def quiet(self, seconds):
        """Assert that nothing arrives for `seconds` (and the connection stays open)."""
        deadline = time.monotonic() + seconds
        try:
            while self.fill(deadline):
                pass
            raise AssertionError("connection closed while it should have been held; got %r" % self.buf[:200])
        except socket.timeout:
            pass
        assert self.buf == b"", "expected nothing for %.1fs, got %r" % (seconds, self.buf[:200])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def request_bytes(method, path, headers=(), body=None, host="127.0.0.1"):
    """A request as bytes: headers a list of pairs or a dict; Content-Length
    when there is a body."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    lines += ["%s: %s" % kv for kv in headers]
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


# ---------------------------------------------------------------- text/event-stream

_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


class SSEBlock:
    """One event-stream block (up to a blank line): lines [(field, value)]
    with comments as (":", text); raw, its bytes with the blank line. event,
    id, retry: the field's last value (None if absent); data: the data lines
    joined with "\n" (None if none: not an event EventSource dispatches)."""

    def __init__(self, lines, raw):
        self.lines = lines
        self.raw = raw

    def field(self, name):
        vals = [v for f, v in self.lines if f == name]
        return vals[-1] if vals else None

    @property
    def event(self):
        return self.field("event")

    @property
    def id(self):
        return self.field("id")

    @property
    def retry(self):
        return self.field("retry")

    @property
    def data(self):
        vals = [v for f, v in self.lines if f == "data"]
        return "\n".join(vals) if vals else None

    @property
    def comments(self):
        return [v for f, v in self.lines if f == ":"]

    def control(self):
        """The JSON of a ferry control event ("event: ferry"), or None."""
        if self.event != "ferry":
            return None
        return json.loads(self.data)

    def __repr__(self):
        return "SSEBlock(%r)" % (self.raw[:300],)


def split_block(buf):
    """(the first complete block of buf, the rest), or (None, buf). Lines end
    in LF or CRLF; "name: value" loses one space after the colon."""
    m = _BLANK_LINE.search(buf)
    if not m:
        return None, buf
    raw, rest = buf[:m.end()], buf[m.end():]
    lines = []
    for line in re.split(r"\r?\n", buf[:m.start()].decode("utf-8")):
        if line.startswith(":"):
            lines.append((":", line[1:]))
            continue
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        lines.append((name, value))
    return SSEBlock(lines, raw), rest


class EventStreamParser:
    """The incremental parser for readers of their own (asyncio):
    feed(bytes) returns the blocks it completes."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            b, self.buf = split_block(self.buf)
            if b is None:
                return out
            out.append(b)


class SSEStream(HTTPConnection):
    """GET path as an event stream on a raw connection (Host and Accept:
    text/event-stream, then headers); status, headers (first value of each),
    header_list and head once read_head() ran (by default at once, bounded
    by timeout). Then next_block() / next_event(), each bounded by its own."""

    def __init__(self, port, path, headers=None, rcvbuf=None, read_head=True, timeout=5.0):
        super().__init__(port, timeout=timeout, rcvbuf=rcvbuf)
        self.port = port
        hdrs = {"Host": "127.0.0.1:%d" % port, "Accept": "text/event-stream"}
        hdrs.update(headers or {})
        req = "GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
        self.send(req.encode())
        self.body_bytes = 0   # bytes of the blocks read so far
        self.status = None
        self.status_line = None
        self.headers = {}
        self.header_list = []
        self.head = b""
        if read_head:
            self.read_head(timeout)

    def read_head(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self.fill(deadline):
                raise AssertionError("closed before the headers: %r" % self.buf)
        self.head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = self.head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, v = line.split(":", 1)
            self.header_list.append((k.strip().lower(), v.strip()))
            self.headers.setdefault(k.strip().lower(), v.strip())
        return self.status

    def rest(self, timeout=5.0):
        """For a refusal: the body (Content-Length, or until the server closes)."""
        deadline = time.monotonic() + timeout
        n = self.headers.get("content-length")
        while (n is None or len(self.buf) < int(n)) and self.fill(deadline):
            pass
        return self.buf

    def read_body_to_eof(self, timeout=5.0):
        """For non-stream answers: everything until the server closes."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            self.fill(deadline)
        body, self.buf = self.buf, b""
        return body

    def next_block(self, timeout=5.0):
        """The next block, or None at a clean EOF (a block cut by EOF is
        discarded, as a reader would)."""
        deadline = time.monotonic() + timeout
        while True:
            b, self.buf = split_block(self.buf)
            if b is not None:
                self.body_bytes += len(b.raw)
                return b
            if self.eof:
                return None
            self.fill(deadline)

    def next_event(self, timeout=5.0):
        """The next block with data (what EventSource dispatches); comment
        and retry-only blocks are skipped; EOF fails."""
        deadline = time.monotonic() + timeout
        while True:
            b = self.next_block(max(0.01, deadline - time.monotonic()))
            if b is None:
                raise AssertionError("SSE stream ended: %r" % self.buf[-300:])
            if b.data is not None:
                return b

    def expect_eof(self, timeout=5.0):
        """Read to EOF; return the complete blocks that came first."""
        deadline = time.monotonic() + timeout
        blocks = []
        while True:
            b = self.next_block(timeout=max(0.01, deadline - time.monotonic()))
            if b is None:
                return blocks
            blocks.append(b)


def parse_metrics(text):
    """/ferry/metrics text as {'name{labels}': value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metrics(port, source=None):
    """GET /ferry/metrics on a fresh connection (from source, if given), parsed."""
    status, _, text = raw_http(port, "GET", "/ferry/metrics", source=source)
    assert status == 200, status
    return parse_metrics(text.decode())


def metric(port, name):
    """One value of /ferry/metrics: name as in the text ('name{labels}')."""
    m = metrics(port)
    if name not in m:
        raise AssertionError("no metric %s in %r" % (name, m))
    return m[name]


class Publisher(Closing):
    """The HTTP publish API over one keep-alive connection; publish() checks
    the 200 and the id it answers, and returns the id."""

    def __init__(self, port, timeout=5.0):
        import http.client
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def publish(self, channel, data, event=None):
        path = "/ferry/publish/" + channel + ("?event=" + event if event else "")
        body = data.encode() if isinstance(data, str) else data
        self.conn.request("POST", path, body=body)
        r = self.conn.getresponse()
        text = r.read()
        assert r.status == 200, (r.status, text)
        mid = json.loads(text)["id"]
        assert ID_RE.match(mid), mid
        return mid

    def close(self):
        self.conn.close()


def raise_nofile():
    """Soft RLIMIT_NOFILE up to the hard limit (ferryd inherits it); returns
    the hard limit (1 << 20 for unlimited)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run(tests):
    """Run test functions in order; print a line each; exit 1 if any failed."""
    failed = 0
    only = sys.argv[1:]
    for t in tests:
        if only and t.__name__ not in only:
            continue
        start = time.monotonic()
        try:
            t()
            print("ok   %s (%.1fs)" % (t.__name__, time.monotonic() - start), flush=True)
        except Exception as e:  # noqa: BLE001 -- report every failure kind
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
    sys.exit(1 if failed else 0)
