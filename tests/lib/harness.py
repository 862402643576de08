"""harness.py -- start a real ferryd on a free loopback port for a test.

Every test binds only to 127.0.0.1, on a port the kernel just handed out, and
every wait is bounded. FERRYD points at the binary (make check sets it);
FERRY_TEST_WRAPPER (e.g. "valgrind --error-exitcode=99 --leak-check=full")
runs ferryd under a tool. Beside Ferry: raw HTTP requests, /ferry/metrics
parsed, Closing (`with` for the tests' own clients), and run(), the runner
of a test file's functions.
"""
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FERRYD = os.environ.get("FERRYD") or os.path.join(HERE, "..", "..", "ferryd")


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


class Ferry:
    """A ferryd process. Use as a context manager; .url, .ws_url, .port."""

    def __init__(self, *args, env=None, startup_timeout=10.0):
        self.port = free_port()
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
        wrapper = shlex.split(os.environ.get("FERRY_TEST_WRAPPER", ""))
        cmd = wrapper + [FERRYD, "--listen", "127.0.0.1:%d" % self.port] + self.args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
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
