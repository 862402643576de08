#!/usr/bin/python3
"""test_drain.py -- graceful drain on SIGTERM.

ferryd must stop accepting, tell every WebSocket client to come back later
(Close 1012 "retry=<ms>" with a random delay), spread those closes over the
drain window so clients do not reconnect as a herd, and exit 0 within the
drain timeout even when a client does not cooperate.
"""
import asyncio
import base64
import os
import re
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
from harness import Ferry, run  # noqa: E402


# ------------------------------------------------ raw async WebSocket client

class Client:
    """A raw WebSocket client on asyncio streams, so we see exactly when the
    server's Close frame arrives."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port, path="/ferry/ws?ch=drain", rcvbuf=None):
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                      % (path, port, key)).encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def frame(self):
        """Next (opcode, payload); raises IncompleteReadError at EOF."""
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return b0 & 0x0F, await self.reader.readexactly(n)

    def send(self, opcode, payload):
        mask = os.urandom(4)
        assert len(payload) < 126
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
                          + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def abort(self):
        self.writer.transport.abort()


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except ConnectionRefusedError:
        return False


# ---------------------------------------------------------------- tests

def test_drain_spreads_closes():
    n = 40
    with Ferry("--drain-window", "2s", "--drain-timeout", "5s", "--reconnect-delay", "3s") as f:
        async def main():
            clients = []
            try:
                for _ in range(n):
                    clients.append(await Client.connect(f.port))
                for c in clients:  # "open", "subscribed"
                    for _ in range(2):
                        op, payload = await asyncio.wait_for(c.frame(), 5)
                        assert op == 1, (op, payload)
                # An already-open keep-alive HTTP connection, to ask healthz during the drain.
                ka = socket.create_connection(("127.0.0.1", f.port), timeout=2)
                ka.sendall(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert ka.recv(4096).startswith(b"HTTP/1.1 200"), "healthz before drain"

                t0 = time.monotonic()
                f.signal(signal.SIGTERM)

                async def watch(c):
                    """Return (close time, code, reason, EOF time after our reply)."""
                    while True:
                        op, payload = await c.frame()
                        if op == 8:
                            t = time.monotonic() - t0
                            c.send(8, payload[:2])  # answer the close handshake
                            break
                    try:
                        while await asyncio.wait_for(c.reader.read(4096), 2):
                            pass
                    except asyncio.TimeoutError:
                        raise AssertionError("server kept TCP open after the close handshake")
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    return t, code, payload[2:].decode("utf-8", "replace"), time.monotonic() - t0
                watchers = asyncio.gather(*(watch(c) for c in clients))

                # (a) The listening socket goes away promptly.
                deadline = time.monotonic() + 1.0
                while listening(f.port):
                    assert time.monotonic() < deadline, "still accepting connections 1s after SIGTERM"
                    await asyncio.sleep(0.02)

                # Optional: healthz on the connection we already had says "draining" (if
                # ferryd keeps idle HTTP connections open during the drain at all).
                try:
                    ka.sendall(b"GET /ferry/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    resp = await asyncio.get_running_loop().run_in_executor(None, ka.recv, 4096)
                except OSError:
                    resp = b""
                ka.close()
                if resp:
                    assert resp.startswith(b"HTTP/1.1 503"), resp
                    assert b"draining" in resp, resp

                results = await asyncio.wait_for(watchers, 8)
                rc = await asyncio.get_running_loop().run_in_executor(None, f.wait, 8)
                return results, rc, time.monotonic() - t0
            finally:
                for c in clients:
                    c.abort()
        results, rc, exited = asyncio.run(main())

        # (b) 1012 with a reconnect hint in [0, 3000) ms, and the hints differ.
        retries = []
        for t, code, reason, _ in results:
            assert code == 1012, (code, reason)
            m = re.match(r"^retry=(\d+)$", reason)
            assert m, reason
            retries.append(int(m.group(1)))
        assert all(0 <= r < 3000 for r in retries), retries
        assert len(set(retries)) > 1, "every client was told the same retry delay: %r" % retries
        assert max(retries) - min(retries) >= 500, "retry delays are not spread: %r" % sorted(retries)

        # (c) The closes are spread over the 2 s window, not all at once.
        times = sorted(t for t, _, _, _ in results)
        assert times[-1] - times[0] > 1.0, "all closes within %.2fs" % (times[-1] - times[0])
        assert times[-1] < 3.0, "last close %.2fs after SIGTERM (window 2s)" % times[-1]
        early = sum(1 for t in times if t < 0.3)
        assert early <= n // 2, "%d of %d closes in the first 300ms: %r" % (early, n, times)
        # and the connections went away when they were closed, not at exit
        assert all(eof - t < 1.0 for t, _, _, eof in results), results

        # (d) ferryd exits 0 within the drain timeout.
        assert rc == 0, "ferryd exited %r" % rc
        assert exited < 5.0 + 0.5, "ferryd exited %.2fs after SIGTERM (drain timeout 5s)" % exited


def test_uncooperative_client_does_not_hold_exit():
    with Ferry("--drain-window", "1s", "--drain-timeout", "3s", "--reconnect-delay", "1s") as f:
        async def main():
            clients = []
            try:
                # One that never reads nor answers anything, and one that stopped reading
                # while it had plenty queued (the Close frame cannot even be sent to it).
                mute = await Client.connect(f.port)
                clients.append(mute)
                stuck = await Client.connect(f.port, path="/ferry/ws?ch=flood", rcvbuf=4096)
                clients.append(stuck)
                await asyncio.sleep(0.1)
                conn = await asyncio.open_connection("127.0.0.1", f.port)
                r, w = conn
                body = b"x" * 4000
                for _ in range(100):
                    w.write(b"POST /ferry/publish/flood HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body) + body)
                    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
                    assert head.startswith(b"HTTP/1.1 200"), head
                    n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
                    await r.readexactly(n)
                w.close()

                t0 = time.monotonic()
                f.signal(signal.SIGTERM)
                rc = await asyncio.get_running_loop().run_in_executor(None, f.wait, 8)
                return rc, time.monotonic() - t0
            finally:
                for c in clients:
                    c.abort()
        rc, exited = asyncio.run(main())
        assert rc == 0, "ferryd exited %r" % rc
        assert exited < 3.0 + 0.7, "ferryd exited %.2fs after SIGTERM (drain timeout 3s)" % exited


def test_drain_without_clients_is_quick():
    with Ferry("--drain-window", "5s", "--drain-timeout", "10s") as f:
        t0 = time.monotonic()
        f.signal(signal.SIGTERM)
        rc = f.wait(5)
        assert rc == 0, rc
        assert time.monotonic() - t0 < 1.0, "idle ferryd took %.2fs to exit" % (time.monotonic() - t0)


if __name__ == "__main__":
    run([test_drain_spreads_closes, test_uncooperative_client_does_not_hold_exit,
         test_drain_without_clients_is_quick])
