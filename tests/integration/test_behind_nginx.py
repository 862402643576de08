#!/usr/bin/python3
"""test_behind_nginx.py -- ferry behind a real nginx, as docs/IN-FRONT.md says.

Starts nginx (Debian's nginx-light; exit 77, skipped, when there is none) on a
free 127.0.0.1 port with a config file in a temp folder, proxying to a ferryd,
and stops it by its PID. Two nginx configs:

  default      proxy_pass and the WebSocket upgrade lines nginx's manual
               gives, nothing else: ferry sees Host: 127.0.0.1:FERRYPORT,
               so a browser's Origin (nginx's address) matches only with
               --public-origin
  documented   IN-FRONT.md's lines (Host $http_host, X-Forwarded-For, -Proto,
               -Host) with --trusted-proxy 127.0.0.1: the Origin matches the
               forwarded host, and the client's address comes from
               X-Forwarded-For (the access log names it)

Each is checked with a browser's WebSocket handshake and POST send (Origin:
nginx's origin), a foreign Origin refused, and metrics refused through the
documented proxy to a client that is not local. The documented haproxy lines
(without TLS) get the same checks when haproxy is installed.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder
from harness import Ferry, free_port, raw_http, run  # noqa: E402

NGINX = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = os.environ.get("HAPROXY") or shutil.which("haproxy") or "/usr/sbin/haproxy"

DEFAULT = """
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
"""
# the lines of docs/IN-FRONT.md ("nginx"), kept in step by test_documented_lines
DOCUMENTED = """
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_buffering off;
      proxy_read_timeout 1h;
"""
MAP = """
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
"""


class Nginx:
    def __init__(self, ferry_port, location, port=None):
        self.dir = tempfile.mkdtemp(prefix="ferry-nginx-")
        os.chmod(self.dir, 0o755)
        self.port = port or free_port()
        self.conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        with open(self.conf, "w") as f:
            f.write("""worker_processes 1;
worker_shutdown_timeout 1s;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %(d)s/client_body;
  proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fastcgi;
  uwsgi_temp_path %(d)s/uwsgi;
  scgi_temp_path %(d)s/scgi;
  %(map)s
  server {
    listen 127.0.0.1:%(port)d;
    location /ferry/ {
      proxy_pass http://127.0.0.1:%(ferry)d;
%(location)s
    }
  }
}
""" % {"d": d, "port": self.port, "ferry": ferry_port, "location": location, "map": MAP})
        self.log = open(os.path.join(d, "stderr"), "w+")
        self.proc = None

    @property
    def origin(self):
        return "http://127.0.0.1:%d" % self.port

    def __enter__(self):
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.dir + "/", "-e", "stderr", "-c", self.conf, "-g",
             "daemon off; pid %s/nginx.pid; error_log stderr warn;" % self.dir],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError("nginx exited:\n" + self.log.read())
            try:
                raw_http(self.port, "GET", "/ferry/healthz", timeout=0.5)
                return self
            except (OSError, AssertionError):
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGQUIT)  # by its PID, never by name
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# docs/IN-FRONT.md's haproxy lines, TLS left out (bind on a loopback port)
HAPROXY_LINES = """defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
frontend www
    bind 127.0.0.1:%(port)d
    option forwardfor
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Host %%[req.hdr(Host)]
    default_backend ferry
backend ferry
    server ferry1 127.0.0.1:%(ferry)d
"""


class Haproxy(Nginx):
    def __init__(self, ferry_port):
        self.dir = tempfile.mkdtemp(prefix="ferry-haproxy-")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "haproxy.cfg")
        with open(self.conf, "w") as f:
            f.write(HAPROXY_LINES % {"port": self.port, "ferry": ferry_port})
        self.log = open(os.path.join(self.dir, "stderr"), "w+")
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.conf],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError("haproxy exited:\n" + self.log.read())
            try:
                raw_http(self.port, "GET", "/ferry/healthz", timeout=0.5)
                return self
            except (OSError, AssertionError):
                time.sleep(0.05)
        raise RuntimeError("haproxy did not start")

    def __exit__(self, *exc):
        self.proc.terminate()  # by its PID
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def ws_handshake(port, origin):
    return raw_http(port, "GET", "/ferry/ws", {
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": origin})[0]


def send(port, origin):
    # POST send takes only a client id negotiate issued (issue 12, defect 8);
    # negotiate refuses a page's origin that send refuses (issue 19), so the
    # id comes without one, and send's own check is what is tested
    status, _, raw = raw_http(port, "GET", "/ferry/negotiate", {"Origin": origin})
    assert status in (200, 403), (status, raw)
    refused = status == 403
    status, _, raw = raw_http(port, "GET", "/ferry/negotiate")
    assert status == 200, (status, raw)
    body = json.dumps({"client": json.loads(raw)["client"], "ops": [
        {"seq": 1, "type": "publish", "channel": "news", "data": "x"}]}).encode()
    status = raw_http(port, "POST", "/ferry/send",
                      {"Origin": origin, "Content-Type": "text/plain"}, body)[0]
    assert refused == (status == 403), "negotiate and send disagree on " + origin
    return status


def test_default_nginx_needs_public_origin():
    with Ferry("--client-publish") as f, Nginx(f.port, DEFAULT) as n:
        # ferry sees Host: 127.0.0.1:FERRYPORT and the page's Origin: nginx's
        assert ws_handshake(n.port, n.origin) == 403
        assert send(n.port, n.origin) == 403
    port = free_port()  # nginx's, known before ferryd starts
    origin = "http://127.0.0.1:%d" % port
    with Ferry("--client-publish", "--public-origin", origin) as f, \
            Nginx(f.port, DEFAULT, port):
        assert ws_handshake(port, origin) == 101
        assert send(port, origin) == 200
        assert ws_handshake(port, "http://evil.example") == 403
        assert send(port, "http://evil.example") == 403


def test_documented_nginx_with_trusted_proxy():
    with tempfile.NamedTemporaryFile(prefix="ferry-nginx-", suffix=".log") as log:
        with Ferry("--client-publish", "--trusted-proxy", "127.0.0.1",
                   "--access-log", log.name) as f, Nginx(f.port, DOCUMENTED) as n:
            assert ws_handshake(n.port, n.origin) == 101
            assert send(n.port, n.origin) == 200
            assert ws_handshake(n.port, "http://evil.example") == 403
            # a client beyond nginx (its X-Forwarded-For, appended to by nginx)
            status, _, _ = raw_http(n.port, "GET", "/ferry/metrics",
                                    {"X-Forwarded-For": "203.0.113.5"})
            assert status == 403, status
            status, _, _ = raw_http(n.port, "POST", "/ferry/publish/news",
                                    {"X-Forwarded-For": "203.0.113.5"}, b"x")
            assert status == 403, status
            time.sleep(0.2)
        lines = open(log.name).read().splitlines()
        assert any(line.startswith("203.0.113.5 - - ") for line in lines), lines


def test_documented_haproxy_with_trusted_proxy():
    if not os.path.exists(HAPROXY):
        print("  (haproxy not installed: case skipped)")
        return
    with tempfile.NamedTemporaryFile(prefix="ferry-haproxy-", suffix=".log") as log:
        with Ferry("--client-publish", "--trusted-proxy", "127.0.0.1",
                   "--access-log", log.name) as f, Haproxy(f.port) as h:
            assert ws_handshake(h.port, h.origin) == 101
            assert send(h.port, h.origin) == 200
            assert ws_handshake(h.port, "http://evil.example") == 403
            status, _, _ = raw_http(h.port, "GET", "/ferry/metrics",
                                    {"X-Forwarded-For": "203.0.113.6"})
            assert status == 403, status
            time.sleep(0.2)
        lines = open(log.name).read().splitlines()
        assert any(line.startswith("203.0.113.6 - - ") for line in lines), lines


def test_documented_lines():
    """The nginx block of docs/IN-FRONT.md is the one tested here."""
    doc = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                            "IN-FRONT.md")).read()
    for line in DOCUMENTED.strip().splitlines() + [MAP.strip()]:
        assert line.strip() in doc, line
    for line in HAPROXY_LINES.replace("%%", "%").splitlines():
        if "%(" not in line and "bind" not in line:
            assert line in doc, line


if __name__ == "__main__":
    if not os.path.exists(NGINX):
        print("nginx not found: skipped")
        sys.exit(77)
    run([
        test_default_nginx_needs_public_origin,
        test_documented_nginx_with_trusted_proxy,
        test_documented_haproxy_with_trusted_proxy,
        test_documented_lines,
    ])
