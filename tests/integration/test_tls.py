"""test_tls.py -- HTTPS and wss:// on --tls-listen: TLS 1.2/1.3 only, ALPN
http/1.1, every transport over it, the certificate reloaded on SIGHUP."""
import asyncio
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Ferry, free_port, run, wait_port  # noqa: E402

import websockets  # noqa: E402

TMP = tempfile.mkdtemp(prefix="ferry-tls-")


def make_cert(name):
    cert, key = os.path.join(TMP, name + ".crt"), os.path.join(TMP, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=" + name], check=True,
                   capture_output=True, timeout=60)
    return cert, key


CERT, KEY = make_cert("first")


def client_ctx(**kw):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_ferry(*extra):
    port = free_port()
    f = Ferry("--tls-listen", "127.0.0.1:%d" % port, "--tls-cert", CERT, "--tls-key", KEY,
              "--echo", "--client-publish", *extra)
    f.tls_port = port
    return f


def wait_tls(port, timeout=10):
    wait_port(port, timeout, "TLS listener")


def https(port, path, ctx=None, method="GET", body=b""):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with (ctx or client_ctx()).wrap_socket(raw) as s:
            s.sendall(("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %d\r\n"
                       "Connection: close\r\n\r\n" % (method, path, port, len(body))).encode() + body)
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload, s


def fingerprint(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client_ctx().wrap_socket(raw) as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def test_versions_and_alpn():
    with tls_ferry() as f:
        wait_tls(f.tls_port)
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = client_ctx(minimum_version=version, maximum_version=version)
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            with socket.create_connection(("127.0.0.1", f.tls_port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as s:
                    assert s.version() == {ssl.TLSVersion.TLSv1_3: "TLSv1.3",
                                           ssl.TLSVersion.TLSv1_2: "TLSv1.2"}[version]
                    assert s.selected_alpn_protocol() == "http/1.1"
        # openssl s_client, as an operator would check it
        out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % f.tls_port,
                              "-tls1_3"], input=b"", capture_output=True, timeout=20).stdout
        assert b"TLSv1.3" in out, out[-500:]
        for old in ("-tls1", "-tls1_1"):
            r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % f.tls_port,
                                old, "-cipher", "DEFAULT@SECLEVEL=0"], input=b"",
                               capture_output=True, timeout=20)
            assert b"Cipher is (NONE)" in r.stdout or r.returncode != 0, (old, r.stdout[-300:])
        status, body, _ = https(f.tls_port, "/ferry/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"


def test_transports_over_tls():
    with tls_ferry() as f:
        wait_tls(f.tls_port)
        url = "wss://127.0.0.1:%d" % f.tls_port

        async def main():
            async with websockets.connect(url + "/ferry/echo", ssl=client_ctx()) as ws:
                await ws.send("x" * 200000)
                assert await asyncio.wait_for(ws.recv(), 10) == "x" * 200000
            async with websockets.connect(url + "/ferry/ws?ch=news", ssl=client_ctx()) as ws:
                assert json.loads(await ws.recv())["type"] == "open"
                assert json.loads(await ws.recv())["type"] == "subscribed"
                status, body, _ = https(f.tls_port, "/ferry/publish/news", method="POST",
                                        body=b"hello over tls")
                assert status == 200, body
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert m["data"] == "hello over tls" and m["id"] == json.loads(body)["id"]
        asyncio.run(main())

        # SSE over TLS
        with socket.create_connection(("127.0.0.1", f.tls_port), timeout=5) as raw:
            with client_ctx().wrap_socket(raw) as s:
                s.sendall(b"GET /ferry/sse?ch=news HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                deadline = time.monotonic() + 5
                while b"event: ferry" not in data and time.monotonic() < deadline:
                    data += s.recv(65536)
                assert b"text/event-stream" in data and b"event: ferry" in data, data[:500]
        # long-poll over TLS
        status, body, _ = https(f.tls_port, "/ferry/poll?ch=news")
        assert status == 200 and "news" in json.loads(body)["cursors"]


def test_sighup_reloads_certificate():
    global CERT, KEY
    cert2, key2 = make_cert("second")
    cur_cert, cur_key = os.path.join(TMP, "current.crt"), os.path.join(TMP, "current.key")
    with open(CERT, "rb") as a, open(cur_cert, "wb") as b:
        b.write(a.read())
    with open(KEY, "rb") as a, open(cur_key, "wb") as b:
        b.write(a.read())
    port = free_port()
    with Ferry("--tls-listen", "127.0.0.1:%d" % port, "--tls-cert", cur_cert,
               "--tls-key", cur_key) as f:
        wait_tls(port)
        before = fingerprint(port)
        # a broken file: the old certificate stays in service
        with open(cur_cert, "w") as b:
            b.write("not a certificate\n")
        f.signal(signal.SIGHUP)
        time.sleep(0.5)
        assert fingerprint(port) == before
        os.replace(cert2, cur_cert)
        os.replace(key2, cur_key)
        f.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while fingerprint(port) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fingerprint(port) != before
        assert "certificate reloaded" in f.output() and "reload failed" in f.output()


def test_bad_certificate_refuses_to_start():
    port = free_port()
    r = subprocess.run([os.environ.get("FERRYD", "ferryd"), "--listen", "127.0.0.1:%d" % free_port(),
                        "--tls-listen", "127.0.0.1:%d" % port, "--tls-cert", "/nonexistent.pem",
                        "--tls-key", KEY], capture_output=True, timeout=20)
    assert r.returncode != 0 and b"--tls-cert" in r.stderr, r.stderr


if __name__ == "__main__":
    run([test_versions_and_alpn, test_transports_over_tls, test_sighup_reloads_certificate,
         test_bad_certificate_refuses_to_start])
