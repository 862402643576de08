#!/usr/bin/python3
"""test_redis_auth.py -- a Redis that wants a password, and one behind TLS.

Real redis-server processes on loopback: requirepass (password in the URL,
in FERRY_REDIS_PASSWORD, in --redis-password-file) and an ACL user; a wrong
password answers healthz 503 at once with the server's reason in the log
(never the password), at start and on a reconnect after the password
changed. TLS with a CA made here with openssl: the right CA works (and a
client certificate when the server asks for one); a wrong CA, an expired
server certificate or a name the certificate does not carry are refused
with a clear reason, and never hang a publish.
"""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder: test_redis.py
from harness import FERRYD, Ferry, run, free_port  # noqa: E402
from test_redis import (REDIS_CLI, REDIS_SERVER, WAIT, RedisServer, api_publish, http, require,  # noqa: E402
                        wait_healthz, wait_until)

PASSWORD = "s3cret-Pa55:w@rd"  # ':' and '@' must survive the URL (percent-encoded there)
PASSWORD_URL = "s3cret-Pa55%3Aw%40rd"


class AuthRedis(RedisServer):
    """A redis-server with extra arguments; the test's own commands use redis-cli."""

    def __init__(self, extra, cli_args):
        super().__init__()
        self.extra = list(extra)
        self.cli_args = list(cli_args)

    def start(self, timeout=10.0):
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--dir", self.dir, "--daemonize", "no",
                "--save", "", "--appendonly", "no"] + self.extra
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited:\n" + open(os.path.join(self.dir, "redis.log")).read())
            return self.rcli("PING") == "PONG"
        wait_until("redis-server answers PING", up, timeout)
        return self

    def rcli(self, *args):
        p = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "--no-auth-warning"] + self.cli_args + list(args),
                           capture_output=True, text=True, timeout=10)
        return p.stdout.strip()


def ferry_log(f):
    with open(f.log.name, errors="replace") as fh:
        return fh.read()


async def pubsub_works(f, channel="c"):
    """A WebSocket subscriber gets what the publish API stores."""
    async with websockets.connect(f.ws_url + "/ferry/ws?ch=" + channel, open_timeout=WAIT) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == "open"
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == "subscribed"
        status, mid = await api_publish(f.port, channel, "hello")
        assert status == 200, status
        m = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert (m["type"], m["id"], m["data"]) == ("message", mid, "hello"), m


async def refused_quickly(f, what):
    """healthz 503 and a publish answered 503 at once (never a hang)."""
    await wait_healthz([f.port], 503, 5, what)
    # healthz names the Redis node it cannot use
    status, _, body = await http(f.port, "GET", "/ferry/healthz")
    h = json.loads(body)
    assert status == 503 and "connection to 127.0.0.1:" in h["backend_problem"], (status, h)
    t0 = time.monotonic()
    status, _ = await api_publish(f.port, "c", "x", timeout=10)
    assert status == 503 and time.monotonic() - t0 < 2, (status, time.monotonic() - t0)


def test_requirepass():
    require(REDIS_SERVER, REDIS_CLI)
    port = free_port()
    r = AuthRedis(["--port", str(port), "--requirepass", PASSWORD], ["-p", str(port), "-a", PASSWORD])
    pwfile = tempfile.NamedTemporaryFile("w", prefix="ferry-redis-pw-", delete=False)
    pwfile.write(PASSWORD + "\n")
    pwfile.close()
    try:
        r.start()
        # in the URL (percent-encoded), in the environment, in a file
        for args, env in ((["--redis", "redis://:%s@127.0.0.1:%d/0" % (PASSWORD_URL, port)], None),
                          (["--redis", "redis://127.0.0.1:%d" % port], {"FERRY_REDIS_PASSWORD": PASSWORD}),
                          (["--redis", "redis://127.0.0.1:%d" % port, "--redis-password-file", pwfile.name], None)):
            with Ferry(*args, env=env) as f:
                async def main():
                    await wait_healthz([f.port], 200, 10, "with the right password")
                    await pubsub_works(f)
                asyncio.run(main())
                assert PASSWORD not in ferry_log(f) and PASSWORD_URL not in ferry_log(f)
                # not on ferryd's command line with the variable or the file
                if env or "--redis-password-file" in args:
                    with open("/proc/%d/cmdline" % f.proc.pid, "rb") as fh:
                        assert PASSWORD.encode() not in fh.read()

        # no password, or a wrong one: refused at start, with the server's reason
        for url in ("redis://127.0.0.1:%d" % port, "redis://:wrong@127.0.0.1:%d" % port):
            with Ferry("--redis", url) as f:
                asyncio.run(refused_quickly(f, "without the right password"))
                log = ferry_log(f)
                assert "authentication failed" in log or "NOAUTH" in log, log
                assert "wrong" not in log and PASSWORD not in log, log

        # the password changes under a running ferryd: the reconnect is refused, then
        # works again once the password is back
        with Ferry("--redis", "redis://127.0.0.1:%d" % port, "--redis-timeout", "1s",
                   env={"FERRY_REDIS_PASSWORD": PASSWORD}) as f:
            async def main():
                await wait_healthz([f.port], 200, 10, "with the right password")
                assert r.rcli("CONFIG", "SET", "requirepass", "other") == "OK"
                r.cli_args[-1] = "other"
                r.rcli("CLIENT", "KILL", "TYPE", "normal")
                r.rcli("CLIENT", "KILL", "TYPE", "pubsub")
                wait_until("ferryd's reconnect is refused", lambda: "WRONGPASS" in ferry_log(f), 5)
                await refused_quickly(f, "after the password changed")
                assert r.rcli("CONFIG", "SET", "requirepass", PASSWORD) == "OK"
                r.cli_args[-1] = PASSWORD
                await wait_healthz([f.port], 200, 10, "once the password is back")
                await pubsub_works(f)
            asyncio.run(main())
            assert PASSWORD not in ferry_log(f) and "other" not in ferry_log(f)
    finally:
        r.stop()
        shutil.rmtree(r.dir, ignore_errors=True)
        os.unlink(pwfile.name)


def test_acl_user():
    require(REDIS_SERVER, REDIS_CLI)
    port = free_port()
    r = AuthRedis(["--port", str(port)], ["-p", str(port)])
    try:
        r.start()
        # what ferry needs: its keys and channels, its functions, nothing else
        assert r.rcli("ACL", "SETUSER", "ferry", "on", ">" + PASSWORD, "~ferry:*", "&ferry:*", "resetchannels",
                      "&ferry:*", "+@all", "-@dangerous", "+function|load", "+ping") == "OK"
        assert r.rcli("ACL", "SETUSER", "default", "off") == "OK"
        r.cli_args += ["--user", "ferry", "--pass", PASSWORD]
        with Ferry("--redis", "redis://ferry:%s@127.0.0.1:%d/0" % (PASSWORD_URL, port)) as f:
            async def main():
                await wait_healthz([f.port], 200, 10, "as the ACL user")
                await pubsub_works(f)
            asyncio.run(main())
            assert PASSWORD not in ferry_log(f)
        # the user in the URL, its password from a variable
        with Ferry("--redis", "redis://ferry@127.0.0.1:%d" % port, env={"FERRY_REDIS_PASSWORD": PASSWORD}) as f:
            asyncio.run(wait_healthz([f.port], 200, 10, "as the ACL user, password from the variable"))
        with Ferry("--redis", "redis://ferry:nope@127.0.0.1:%d" % port) as f:
            asyncio.run(refused_quickly(f, "a wrong password for the ACL user"))
            assert "WRONGPASS" in ferry_log(f), ferry_log(f)
    finally:
        r.stop()
        shutil.rmtree(r.dir, ignore_errors=True)


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d):
    """ca.pem (+ other-ca.pem, untrusted), server.pem for 127.0.0.1 and redis.test,
    expired.pem (same key, not valid any more), client.pem signed by ca."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=ferry test CA", cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem",
            "-days", "2", "-subj", "/CN=some other CA", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as fh:
        fh.write("subjectAltName=IP:127.0.0.1,DNS:redis.test\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=redis.test", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "expired.pem", "-days", "-1", "-extfile", "server.ext", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
            "-subj", "/CN=ferryd", cwd=d)
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "client.pem", "-days", "2", cwd=d)


def tls_redis(d, cert, auth_clients):
    port = free_port()
    return AuthRedis(["--port", "0", "--tls-port", str(port), "--tls-cert-file", os.path.join(d, cert),
                      "--tls-key-file", os.path.join(d, "server.key"), "--tls-ca-cert-file", os.path.join(d, "ca.pem"),
                      "--tls-auth-clients", "yes" if auth_clients else "no"],
                     ["-p", str(port), "--tls", "--cacert", os.path.join(d, "ca.pem"),
                      "--cert", os.path.join(d, "client.pem"), "--key", os.path.join(d, "client.key")]), port


def test_tls():
    require(REDIS_SERVER, REDIS_CLI, "openssl")
    d = tempfile.mkdtemp(prefix="ferry-redis-tls-")
    try:
        make_certs(d)
        ca, other = os.path.join(d, "ca.pem"), os.path.join(d, "other-ca.pem")
        r, port = tls_redis(d, "server.pem", auth_clients=False)
        try:
            r.start()
            url = "rediss://127.0.0.1:%d/0" % port
            with Ferry("--redis", url, "--redis-tls-ca", ca) as f:
                async def main():
                    await wait_healthz([f.port], 200, 10, "over TLS with the right CA")
                    await pubsub_works(f)
                asyncio.run(main())
            # the name the certificate carries, asked for explicitly; and one it does not
            with Ferry("--redis", url, "--redis-tls-ca", ca, "--redis-tls-server-name", "redis.test") as f:
                asyncio.run(wait_healthz([f.port], 200, 10, "with --redis-tls-server-name redis.test"))
            with Ferry("--redis", url, "--redis-tls-ca", ca, "--redis-tls-server-name", "elsewhere.test") as f:
                asyncio.run(refused_quickly(f, "a name the certificate does not carry"))
                assert "certificate verify failed" in ferry_log(f), ferry_log(f)
            # a CA that did not sign the server's certificate; plain redis:// to a TLS port
            with Ferry("--redis", url, "--redis-tls-ca", other) as f:
                asyncio.run(refused_quickly(f, "the wrong CA"))
                log = ferry_log(f)
                assert "certificate verify failed" in log, log
            with Ferry("--redis", "redis://127.0.0.1:%d/0" % port, "--redis-timeout", "1s") as f:
                asyncio.run(refused_quickly(f, "plain TCP to a TLS port"))
        finally:
            r.stop()
            shutil.rmtree(r.dir, ignore_errors=True)

        # an expired server certificate
        r, port = tls_redis(d, "expired.pem", auth_clients=False)
        try:
            r.cli_args.append("--insecure")
            r.start()
            with Ferry("--redis", "rediss://127.0.0.1:%d" % port, "--redis-tls-ca", ca) as f:
                asyncio.run(refused_quickly(f, "an expired certificate"))
                assert "certificate has expired" in ferry_log(f), ferry_log(f)
        finally:
            r.stop()
            shutil.rmtree(r.dir, ignore_errors=True)

        # a server that wants a client certificate
        r, port = tls_redis(d, "server.pem", auth_clients=True)
        try:
            r.start()
            url = "rediss://127.0.0.1:%d" % port
            with Ferry("--redis", url, "--redis-tls-ca", ca, "--redis-timeout", "1s") as f:
                asyncio.run(refused_quickly(f, "no client certificate"))
            with Ferry("--redis", url, "--redis-tls-ca", ca, "--redis-tls-cert", os.path.join(d, "client.pem"),
                       "--redis-tls-key", os.path.join(d, "client.key")) as f:
                async def main():
                    await wait_healthz([f.port], 200, 10, "with a client certificate")
                    await pubsub_works(f)
                asyncio.run(main())
        finally:
            r.stop()
            shutil.rmtree(r.dir, ignore_errors=True)

        # files that cannot be loaded: ferryd does not start, and says which
        p = subprocess.run([FERRYD, "--listen", "127.0.0.1:%d" % free_port(), "--redis",
                            "rediss://127.0.0.1:1", "--redis-tls-ca", os.path.join(d, "missing.pem")],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode != 0 and "--redis-tls-ca" in p.stderr + p.stdout, p
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    run([test_requirepass, test_acl_user, test_tls])
