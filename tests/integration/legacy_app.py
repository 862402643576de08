#!/usr/bin/python3
"""legacy_app.py -- a small "legacy" HTTP app for ferry's --upstream tests.

Python stdlib only: http.server.ThreadingHTTPServer speaking HTTP/1.1 with
keep-alive. Run it by hand in front of (well, behind) a ferryd:

    /usr/bin/python3 legacy_app.py --port 9000 [--ferry-url http://127.0.0.1:8080 --publish-key K]
    ./ferryd --upstream http://127.0.0.1:9000 --client-publish

or import it from a test:

    import legacy_app
    port, stats = legacy_app.start()   # a free 127.0.0.1 port, served by a thread
    ...
    stats.stop()

Endpoints (methods not listed answer 405):
  GET  /                      HTML page: ferry.js subscribes to "news", a form publishes to "chat"
                              (?transport=websocket|sse|poll forces one transport)
  GET  /form, POST /form      urlencoded form; POST echoes the fields as HTML
                              (POST /form?redirect=1 answers 303 See Other to /form?done=1)
  PUT|POST /upload            reads the body in pieces (Content-Length or chunked) and answers
                              {"size": N, "sha256": HEX}; ?pause_ms=N waits before reading;
                              ?id=X: progress visible in stats.upload_seen[X]
  GET|HEAD /download?size=N   N deterministic bytes (see body_chunks) in 64 KiB writes, with
                              Content-Length, or chunked with &chunked=1
  ANY  /headers[/...]         JSON: method, raw path, headers received (in order), peer address,
                              and the body's size and sha256
  GET  /slow?ms=N             sleeps N ms, then answers "slept N"
  GET  /drip?n=K&ms=M         chunked: K chunks "chunk i\\n", M ms apart (times in stats.drip_sent)
  GET  /cut                   Content-Length: 1000, sends 100 bytes and closes the connection
                              (?chunked=1: two chunks, then closes without the last chunk)
  GET  /nocontent             204; GET /notmodified: 304 (with ETag)
  GET  /status?code=N         that status with a short text body
  GET  /hop                   a response carrying hop-by-hop headers a proxy must remove
  GET  /app-ws                a WebSocket echo server written by hand (?greet=1: sends
                              "hello from app" first); its 101 carries X-Legacy-App: ws
  POST /hooks/publish         {"channel","data","client","identity"} -> {"reply": "app got: DATA"}
  GET  /hooks/seen            JSON: the bodies /hooks/publish received so far (stats.hooks), oldest first
  POST /publish?channel=C     publishes the body to ferry (--ferry-url, --publish-key)
  ANY  /ferry/...             must never arrive here: counted in stats.ferry_paths, answered 418
Every response carries X-Legacy-App: 1.
"""
import argparse
import base64
import hashlib
import html
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PIECE = 64 * 1024

# ---------------------------------------------------------------- deterministic bytes

# A 64 KiB pattern of sha256 counter blocks; piece i of a download is the
# pattern with its first 32 bytes replaced by sha256("piece i"), so a dropped,
# repeated or reordered piece changes the digest.
_PATTERN = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(PIECE // 32))


def body_chunks(size):
    """The bytes GET /download?size=N sends, as pieces of at most 64 KiB."""
    i = 0
    left = size
    while left > 0:
        piece = hashlib.sha256(b"piece %d" % i).digest() + _PATTERN[32:]
        yield piece[:left] if left < PIECE else piece
        left -= PIECE
        i += 1


def body_sha256(size):
    h = hashlib.sha256()
    for piece in body_chunks(size):
        h.update(piece)
    return h.hexdigest()


# ---------------------------------------------------------------- stats

class Stats:
    """What the app saw. Counters only go up; read them under .lock or as deltas."""

    def __init__(self):
        self.lock = threading.Lock()
        self.connections = 0      # TCP connections accepted
        self.requests = 0         # requests served (any endpoint)
        self.peer_ports = []      # remote port of every accepted connection
        self.upload_bytes = 0     # bytes read so far by the current/last /upload
        self.upload_seen = {}     # /upload?id=X: bytes of that upload read so far
        self.uploads = []         # {"size", "sha256", "first_piece_at", "done_at"}
        self.drip_sent = []       # monotonic times of each /drip chunk of the last /drip
        self.ws_sessions = 0      # /app-ws handshakes answered
        self.ws_unmasked = 0      # frames from the client that were not masked (must stay 0)
        self.hooks = []           # JSON bodies received on /hooks/publish
        self.ferry_paths = []     # paths under /ferry/ that reached the app (must stay empty)
        self.server = None

    def count(self, field, n=1):
        with self.lock:
            setattr(self, field, getattr(self, field) + n)

    def snapshot(self):
        with self.lock:
            return {"connections": self.connections, "requests": self.requests}

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# ---------------------------------------------------------------- the page

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Legacy app</title></head>
<body>
<h1>Legacy app</h1>
<p>ferry: <span id="state">connecting</span> over <span id="transport">-</span></p>
<h2>news</h2>
<ul id="news"></ul>
<form id="chat-form">
  <input id="chat-text" name="text" autocomplete="off" placeholder="say something">
  <button type="submit">Send</button>
</form>
<p id="reply"></p>
<script src="/ferry/ferry.js"></script>
<script>
(function () {
  var m = /[?&]transport=([^&]*)/.exec(window.location.search);
  var options = {};
  if (m) {
    var t = decodeURIComponent(m[1]);
    options = {transports: [t]};
  }
  var ferry = new Ferry('/ferry/', options);
  window.ferry = ferry;
  function $(id) { return document.getElementById(id); }
  ferry.on('state', function (s) { $('state').textContent = s; });
  ferry.on('transport', function (name) { $('transport').textContent = name; });
  ferry.subscribe('news', function (data) {
    var li = document.createElement('li');
    li.textContent = data;
    $('news').appendChild(li);
  });
  $('chat-form').onsubmit = function (e) {
    e.preventDefault();
    var input = $('chat-text'), text = input.value;
    input.value = '';
    ferry.publish('chat', text, function (err, reply) {
      var out = $('reply');
      if (err) out.textContent = 'error: ' + (err.code || JSON.stringify(err));
      else if (reply === undefined || reply === null) out.textContent = 'sent';
      else out.textContent = typeof reply === 'string' ? reply : JSON.stringify(reply);
    });
    return false;
  };
})();
</script>
</body></html>
"""

FORM_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Form</title></head><body>
<form method="post" action="/form">
  <input name="name" value=""> <textarea name="comment"></textarea>
  <button type="submit">Submit</button>
</form>
</body></html>
"""


# ---------------------------------------------------------------- the handler

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LegacyApp/1.0"
    timeout = 120  # an idle keep-alive connection's thread ends after this

    def setup(self):
        super().setup()
        st = self.server.stats
        with st.lock:
            st.connections += 1
            st.peer_ports.append(self.client_address[1])

    def log_message(self, fmt, *args):  # quiet
        pass

    # -- helpers

    @property
    def stats(self):
        return self.server.stats

    def parsed(self):
        u = urllib.parse.urlsplit(self.path)
        return u.path, urllib.parse.parse_qs(u.query)

    def qint(self, q, name, default):
        try:
            return int(q.get(name, [default])[0])
        except ValueError:
            return default

    def reply(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("X-Legacy-App", "1")
        if status not in (204, 304) and not (100 <= status < 200):
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def reply_json(self, status, obj, headers=()):
        self.reply(status, json.dumps(obj), "application/json", headers)

    def body_pieces(self):
        """The request body, as it arrives: Content-Length or chunked."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("EOF in chunk size")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers, up to the blank line
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            return
                left = size
                while left:
                    b = self.rfile.read(min(left, PIECE))
                    if not b:
                        raise ConnectionError("EOF in chunk")
                    left -= len(b)
                    yield b
                self.rfile.readline(16)  # CRLF after the chunk
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                b = self.rfile.read(min(left, PIECE))
                if not b:
                    raise ConnectionError("EOF in body")
                left -= len(b)
                yield b

    def read_body(self):
        return b"".join(self.body_pieces())

    def start_chunked(self, status=200, ctype="application/octet-stream", headers=()):
        self.send_response(status)
        self.send_header("X-Legacy-App", "1")
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- dispatch

    def dispatch(self):
        with self.stats.lock:
            self.stats.requests += 1
        path, q = self.parsed()
        m = self.command
        if path.startswith("/ferry/"):
            with self.stats.lock:
                self.stats.ferry_paths.append(self.path)
            self.read_body()
            return self.reply(418, "legacy app: %s should have been answered by ferry\n" % path)
        if path == "/headers" or path.startswith("/headers/"):
            return self.h_headers()
        routes = {
            "/": (("GET", "HEAD"), self.h_index),
            "/form": (("GET", "HEAD", "POST"), self.h_form),
            "/upload": (("PUT", "POST"), self.h_upload),
            "/download": (("GET", "HEAD"), self.h_download),
            "/slow": (("GET", "HEAD"), self.h_slow),
            "/drip": (("GET",), self.h_drip),
            "/cut": (("GET",), self.h_cut),
            "/nocontent": (("GET", "HEAD", "POST", "PUT", "DELETE"), self.h_nocontent),
            "/notmodified": (("GET", "HEAD"), self.h_notmodified),
            "/status": (("GET", "HEAD", "POST"), self.h_status),
            "/hop": (("GET", "HEAD"), self.h_hop),
            "/app-ws": (("GET",), self.h_ws),
            "/hooks/publish": (("POST",), self.h_hook),
            "/hooks/seen": (("GET",), self.h_hooks_seen),
            "/publish": (("POST",), self.h_publish),
        }
        if path not in routes:
            self.read_body()
            return self.reply(404, "legacy app: no such page %s\n" % path)
        methods, fn = routes[path]
        if m not in methods:
            self.read_body()
            return self.reply(405, "method not allowed\n", headers=[("Allow", ", ".join(methods))])
        return fn(q)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = dispatch

    # -- endpoints

    def h_index(self, q):
        self.reply(200, PAGE, "text/html; charset=utf-8")

    def h_form(self, q):
        if self.command != "POST":
            return self.reply(200, FORM_PAGE, "text/html; charset=utf-8")
        fields = urllib.parse.parse_qsl(self.read_body().decode("utf-8", "replace"), keep_blank_values=True)
        if q.get("redirect"):
            return self.reply(303, "see /form?done=1\n", headers=[("Location", "/form?done=1")])
        items = "".join("<li><b>%s</b>=<span>%s</span></li>" % (html.escape(k), html.escape(v)) for k, v in fields)
        self.reply(200, "<!doctype html><html><body><h1>Received</h1><ul>%s</ul></body></html>" % items,
                   "text/html; charset=utf-8")

    def h_upload(self, q):
        uid = q.get("id", [None])[0]
        pause = self.qint(q, "pause_ms", 0)
        if pause:
            time.sleep(pause / 1000.0)
        h = hashlib.sha256()
        n = 0
        first = None
        with self.stats.lock:
            self.stats.upload_bytes = 0
        for piece in self.body_pieces():
            if first is None:
                first = time.monotonic()
            h.update(piece)
            n += len(piece)
            with self.stats.lock:
                self.stats.upload_bytes = n
                if uid is not None:
                    self.stats.upload_seen[uid] = n
        rec = {"size": n, "sha256": h.hexdigest()}
        with self.stats.lock:
            self.stats.uploads.append(dict(rec, first_piece_at=first, done_at=time.monotonic()))
        self.reply_json(200, rec)

    def h_download(self, q):
        size = max(0, self.qint(q, "size", 0))
        if q.get("chunked") and self.command != "HEAD":
            self.start_chunked()
            for piece in body_chunks(size):
                self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_response(200)
        self.send_header("X-Legacy-App", "1")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command == "HEAD":
            return
        for piece in body_chunks(size):
            self.wfile.write(piece)

    def h_headers(self):
        body = self.read_body()
        self.reply_json(200, {
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "peer": [self.client_address[0], self.client_address[1]],
            "body_size": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        })

    def h_slow(self, q):
        ms = self.qint(q, "ms", 1000)
        time.sleep(ms / 1000.0)
        self.reply(200, "slept %d\n" % ms)

    def h_drip(self, q):
        n, ms = self.qint(q, "n", 3), self.qint(q, "ms", 500)
        with self.stats.lock:
            self.stats.drip_sent = []
        self.start_chunked(ctype="text/plain; charset=utf-8")
        for i in range(n):
            if i:
                time.sleep(ms / 1000.0)
            with self.stats.lock:
                self.stats.drip_sent.append(time.monotonic())
            self.write_chunk(b"chunk %d\n" % i)
        self.wfile.write(b"0\r\n\r\n")

    def h_cut(self, q):
        if q.get("chunked"):
            self.start_chunked(ctype="text/plain")
            self.write_chunk(b"a" * 50)
            self.write_chunk(b"b" * 50)
        else:
            self.send_response(200)
            self.send_header("X-Legacy-App", "1")
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"c" * 100)
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def h_nocontent(self, q):
        self.read_body()
        self.reply(204)

    def h_notmodified(self, q):
        self.reply(304, headers=[("ETag", '"v1"')])

    def h_status(self, q):
        self.read_body()
        code = self.qint(q, "code", 200)
        self.reply(code, "status %d from the app\n" % code)

    def h_hop(self, q):
        body = b"hop-by-hop test\n"
        self.send_response(200)
        for k, v in (("X-Legacy-App", "1"),
                     ("Content-Type", "text/plain"),
                     ("Content-Length", str(len(body))),
                     ("Connection", "X-App-Hop, X-App-Hop2"),
                     ("X-App-Hop", "must be removed"),
                     ("X-App-Hop2", "must be removed too"),
                     ("Keep-Alive", "timeout=99, max=7"),
                     ("Proxy-Connection", "keep-alive"),
                     ("Upgrade", "h2c"),
                     ("Trailer", "X-Checksum"),
                     ("TE", "trailers"),
                     ("X-App-End-To-End", "kept"),
                     ("Set-Cookie", "a=1; Path=/"),
                     ("Set-Cookie", "b=2; Path=/")):
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def h_hook(self, q):
        try:
            req = json.loads(self.read_body() or b"{}")
        except ValueError:
            return self.reply_json(400, {"error": "bad json"})
        with self.stats.lock:
            self.stats.hooks.append(req)
        data = req.get("data")
        if not isinstance(data, str):
            data = json.dumps(data)
        self.reply_json(200, {"reply": "app got: " + data})

    def h_hooks_seen(self, q):
        with self.stats.lock:
            hooks = list(self.stats.hooks)
        self.reply_json(200, hooks, headers=[("Cache-Control", "no-store")])

    def h_publish(self, q):
        body = self.read_body()
        ferry = self.server.ferry_url
        if not ferry:
            return self.reply(503, "no --ferry-url configured\n")
        channel = q.get("channel", ["news"])[0]
        url = ferry.rstrip("/") + "/ferry/publish/" + urllib.parse.quote(channel, safe="")
        req = urllib.request.Request(url, data=body, method="POST")
        if self.server.publish_key:
            req.add_header("Authorization", "Bearer " + self.server.publish_key)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                status, out = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, out = e.code, e.read()
        except OSError as e:
            status, out = 502, ("ferry unreachable: %s\n" % e).encode()
        self.reply(status, out, "application/json")

    # -- the WebSocket far end

    def h_ws(self, q):
        key = self.headers.get("Sec-WebSocket-Key")
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            return self.reply(426, "WebSocket upgrade required\n", headers=[("Upgrade", "websocket")])
        accept = base64.b64encode(hashlib.sha1((key.strip() + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("X-Legacy-App", "ws")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        with self.stats.lock:
            self.stats.ws_sessions += 1
        if q.get("greet"):
            self.ws_send(0x1, b"hello from app")
        fragments, fopcode = [], 0
        while True:
            frame = self.ws_recv()
            if frame is None:
                return
            fin, opcode, payload = frame
            if opcode == 0x8:
                self.ws_send(0x8, payload[:2] if len(payload) >= 2 else b"")
                return
            if opcode == 0x9:
                self.ws_send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2):
                fragments, fopcode = [payload], opcode
            elif opcode == 0x0:
                fragments.append(payload)
            if fin:
                self.ws_send(fopcode, b"".join(fragments))
                fragments = []

    def ws_recv(self):
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        b0, b1 = head[0], head[1]
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.rfile.read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.rfile.read(8))[0]
        if b1 & 0x80:
            mask = self.rfile.read(4)
        else:
            mask = None
            with self.stats.lock:
                self.stats.ws_unmasked += 1
        payload = self.rfile.read(n)
        if len(payload) < n:
            return None
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def ws_send(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self.wfile.write(head + payload)
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # a peer that went away mid-answer (a proxy closing, a test done) is not news
        import sys
        if isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            return
        super().handle_error(request, client_address)


def make_server(port=0, host="127.0.0.1", ferry_url=None, publish_key=None):
    srv = Server((host, port), Handler)
    srv.stats = Stats()
    srv.stats.server = srv
    srv.ferry_url = ferry_url
    srv.publish_key = publish_key
    return srv


def start(ferry_url=None, publish_key=None):
    """Start the app on a free 127.0.0.1 port in a daemon thread.
    Returns (port, stats); stats.stop() shuts it down."""
    srv = make_server(0, ferry_url=ferry_url, publish_key=publish_key)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    return srv.server_address[1], srv.stats


def main():
    ap = argparse.ArgumentParser(description="a legacy HTTP app to put behind ferryd --upstream")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ferry-url", help="ferry's base URL, for POST /publish (e.g. http://127.0.0.1:8080)")
    ap.add_argument("--publish-key", help="ferry's --publish-key")
    a = ap.parse_args()
    srv = make_server(a.port, a.host, a.ferry_url, a.publish_key)
    print("legacy app on http://%s:%d/" % (a.host, srv.server_address[1]), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
