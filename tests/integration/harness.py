"""harness.py -- start a real ferryd on a free loopback port for a test.

Every test binds only to 127.0.0.1, on a port the kernel just handed out, and
every wait is bounded. FERRYD points at the binary (make check sets it);
FERRY_TEST_WRAPPER (e.g. "valgrind --error-exitcode=99 --leak-check=full")
runs ferryd under a tool.
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
