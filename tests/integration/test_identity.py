#!/usr/bin/python3
"""test_identity.py -- identity is what the client proves, not what it says.

POST send's de-duplication and rate are keyed by the client id negotiate
issued (signed by ferry), never by a name the client picks: a made-up or
forged id is 400 bad_client, so nobody can stop a victim's messages with a
huge seq under its name; fresh ids do not buy fresh rate (the address has
its own bucket); client= on long-polls takes only issued ids; ferry:in:CH
announces the issued id. An auth operation that replaces a token re-checks
every subscription; a GRIP hold on a private channel gets its messages.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))  # tests/lib
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))  # this folder
from harness import Ferry, client_id, raw_http, run  # noqa: E402
from wsclient import barrier, connect, recv_json, request, subscribe_ok  # noqa: E402
import test_auth  # noqa: E402  (its token helpers)
from test_redis import REDIS_CLI, RedisServer  # noqa: E402

WAIT = 5.0


def op(seq, channel, data):
    return {"seq": seq, "type": "publish", "channel": channel, "data": data}


def send(port, client, ops):
    body = json.dumps({"client": client, "ops": ops}).encode()
    status, _, raw = raw_http(port, "POST", "/ferry/send", {"Content-Type": "text/plain"}, body)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def history(port, channel):
    status, _, raw = raw_http(port, "GET", "/ferry/poll?ch=%s,00000000:0" % channel)
    assert status == 200, (status, raw)
    return [m["data"] for m in json.loads(raw)["messages"]]


def test_made_up_and_forged_ids_are_refused():
    with Ferry("--client-publish") as f:
        victim = client_id(f.port, "victim")
        assert send(f.port, victim, [op(1, "chat", "v1")]) == (200, {"ack": 1})
        # an attacker who names a client, or forges the signature part
        forged = victim[:25] + ("0" if victim[25] != "0" else "1") + victim[26:]
        for name in ("victim", "me", forged, victim[:24] + "-" + "0" * 24):
            st, body = send(f.port, name, [op(10 ** 15, "chat", "evil")])
            assert st == 400 and body["error"] == "bad_client", (name, st, body)
        # the victim's next message is published: nobody moved its seq
        assert send(f.port, victim, [op(2, "chat", "v2")]) == (200, {"ack": 2})
        assert history(f.port, "chat") == ["v1", "v2"]
        # client= on a poll takes only an issued id
        st, _, _ = raw_http(f.port, "GET", "/ferry/poll?ch=chat&client=victim")
        assert st == 400, st
        st, _, _ = raw_http(f.port, "GET", "/ferry/sse?ch=chat&client=" + forged)
        assert st == 400, st
        st, _, raw = raw_http(f.port, "GET", "/ferry/poll?ch=chat&client=" + victim)
        assert st == 200, (st, raw)


def test_ids_are_shared_by_a_secret():
    with Ferry("--client-publish", "--client-id-secret", "lb-1") as a, \
            Ferry("--client-publish", "--client-id-secret", "lb-1") as b, \
            Ferry("--client-publish", "--client-id-secret", "other") as c, \
            Ferry("--client-publish", "--jwt-secret", "jwt-x") as d, \
            Ferry("--client-publish", "--jwt-secret", "jwt-x") as e:
        cid = client_id(a.port, "roamer")
        assert send(b.port, cid, [op(1, "chat", "x")]) == (200, {"ack": 1})
        st, body = send(c.port, cid, [op(1, "chat", "x")])
        assert st == 400 and body["error"] == "bad_client", (st, body)
        assert send(e.port, client_id(d.port, "tab"), [op(1, "chat", "y")]) == (200, {"ack": 1})


def test_rotating_ids_buys_no_rate():
    rate = 5
    with Ferry("--client-publish", "--rate-messages", str(rate),
               "--rate-messages-per-address", str(rate)) as f:
        ids = [client_id(f.port, "rot%d" % i) for i in range(10)]
        t0 = time.monotonic()
        published = 0
        for cid in ids:
            st, body = send(f.port, cid, [op(i, "chat", "m") for i in range(1, 11)])
            assert st in (200, 429), (st, body)
            published += body["ack"] if st == 200 else 0
        elapsed = time.monotonic() - t0
        # one address: one burst (2N) and what refills meanwhile, not 10 x that
        assert published <= 2 * rate + rate * elapsed + 1, (published, elapsed)
        status, _, raw = raw_http(f.port, "GET", "/ferry/metrics")
        assert 'ferry_limited_total{limit="client_rate"}' in raw.decode(), raw


def test_inbound_announces_the_issued_id():
    with RedisServer() as r, Ferry("--redis", r.url, "--client-publish") as f:
        sub = subprocess.Popen([REDIS_CLI, "-h", "127.0.0.1", "-p", str(r.port), "--no-raw",
                                "SUBSCRIBE", "ferry:in:room"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + WAIT
            while int(r.cli("PUBSUB", "NUMSUB", "ferry:in:room").split()[-1]) < 1:
                assert time.monotonic() < deadline, "redis-cli did not subscribe"
                time.sleep(0.05)
            st, body = send(f.port, "mallory", [op(1, "room", "claimed")])
            assert st == 400, (st, body)
            cid = client_id(f.port, "honest")
            assert send(f.port, cid, [op(1, "room", "hi")]) == (200, {"ack": 1})
            time.sleep(0.3)
        finally:
            sub.terminate()
            out = sub.communicate(timeout=WAIT)[0].decode()
        lines = [line.split(") ", 1)[1] for line in out.splitlines() if ') "{' in line]
        msgs = [json.loads(json.loads(line)) for line in lines]
        assert [(m["data"], m["sender"]) for m in msgs] == [("hi", cid)], out


def test_replaced_token_rechecks_subscriptions():
    with Ferry("--jwt-secret", test_auth.SECRET) as f:
        both = test_auth.hs256(test_auth.claims(channels=["private-a", "private-b"]))
        only_a = test_auth.hs256(test_auth.claims(channels=["private-a"]))

        async def main():
            ws = await connect(f, "?token=" + both)
            await subscribe_ok(ws, "private-a", 1)
            await subscribe_ok(ws, "private-b", 2)
            r = await request(ws, {"type": "auth", "token": only_a, "ref": 3})
            assert r["type"] == "authenticated", r
            frames = await barrier(ws)
            assert {"type": "unsubscribed", "channel": "private-b"} in [
                {k: v for k, v in m.items() if k in ("type", "channel")} for m in frames], frames
            assert any(m["type"] == "error" and m.get("code") == "forbidden" for m in frames), frames
            for ch in ("private-a", "private-b"):
                st, _, raw = raw_http(f.port, "POST", "/ferry/publish/" + ch, {}, ch.encode())
                assert st == 200, (st, raw)
            got = []
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    m = await recv_json(ws, max(0.01, deadline - time.monotonic()))
                except (asyncio.TimeoutError, TimeoutError):
                    break
                if m["type"] == "message":
                    got.append(m["channel"])
            assert got == ["private-a"], got
            await ws.close()
        asyncio.run(main())


def test_grip_hold_on_private_channel():
    import test_grip
    test_grip.APP.route("/hold-private", 200, test_grip.hold_headers("private-g", timeout=5),
                        b"timeout")
    with test_grip.grip() as f:
        with test_grip.Client(f.port) as c:
            c.get("/hold-private")
            test_grip.wait_gauge(f.port, 1)
            st, _, raw = raw_http(f.port, "POST", "/ferry/publish/private-g", {}, b"for the hold")
            assert st == 200, (st, raw)
            r = c.response(3)
            assert r.status == 200 and r.body == b"for the hold", (r.status, r.body)


if __name__ == "__main__":
    run([test_made_up_and_forged_ids_are_refused, test_ids_are_shared_by_a_secret,
         test_rotating_ids_buys_no_rate, test_inbound_announces_the_issued_id,
         test_replaced_token_rechecks_subscriptions, test_grip_hold_on_private_channel])
