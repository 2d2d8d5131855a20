#!/usr/bin/env python3
"""Uses the site as Matrix users do, through the VIP with the site's certificate, and prints one
JSON line with what it saw.

    MATRIX_HA_ALICE_PASSWORD=... MATRIX_HA_BOB_PASSWORD=... matrix_check.py DOMAIN CA_FILE MESSAGES
    MATRIX_HA_ALICE_PASSWORD=... matrix_check.py DOMAIN CA_FILE drill DIR SECONDS
    MATRIX_HA_PASSWORD=... matrix_check.py DOMAIN CA_FILE forged USER
    MATRIX_HA_ALICE_PASSWORD=... matrix_check.py DOMAIN CA_FILE remember FILE MESSAGES
    MATRIX_HA_ALICE_PASSWORD=... matrix_check.py DOMAIN CA_FILE recall FILE

Both users log in on https://matrix.DOMAIN; alice makes a room and invites bob, bob joins; both
send MESSAGES/2 messages at once (waiting out the server's 429s as clients do) while each user's
client long-polls /sync; those syncs must bring every acknowledged event exactly once, each
sender's in the order sent, with no gap. A file is uploaded and downloaded back. The federation
port answers /_matrix/key/v2/server with the server's signing key, and the base domain serves
/.well-known/matrix/server and /client. Every request is bounded by a timeout, every loop by a
count. Passwords come from the environment, never the command line.

The forged mode logs USER in and asks who it is with a forged X-Forwarded-For header
(203.0.113.7), then tries six logins of an unknown user, each with another forged address, and
prints how many the server refused with 429 (its per-address login limit, which a forged header
must not escape).

The drill mode is the HA drill's writer: alice sends numbered messages into a room of her own,
one at a time, for at most SECONDS or until the file DIR/stop appears. A send that fails is
retried with the same transaction id (Synapse answers a retried id with the first event), so an
acknowledged message is counted once. DIR/status holds the running figures (acknowledged,
failed, server errors, the time of the last acknowledged send, the longest stall between two);
at the end each acknowledged event is read back and DIR/result holds the figures and the count
of acknowledged events the server no longer has.
"""
import hashlib
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

DOMAIN, CA = sys.argv[1], sys.argv[2]
BASE = f"https://matrix.{DOMAIN}"
TLS = ssl.create_default_context(cafile=CA)


def call(method, url, token=None, body=None, raw=None, content_type="application/json", timeout=30,
         headers=None):
    headers = dict(headers or {})
    data = None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif raw is not None:
        data = raw
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, context=TLS, timeout=timeout) as resp:
        payload = resp.read()
        return resp.status, dict(resp.headers), payload


def api(method, path, token=None, body=None, headers=None, timeout=30):
    status, _, payload = call(method, BASE + path, token, body, headers=headers, timeout=timeout)
    return json.loads(payload) if payload else {}


def login(user, password, headers=None):
    return api("POST", "/_matrix/client/v3/login", body={
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    }, headers=headers)


def forged(user):
    forged_header = {"X-Forwarded-For": "203.0.113.7"}
    me = login(user, os.environ["MATRIX_HA_PASSWORD"], headers=forged_header)
    whoami = api("GET", "/_matrix/client/v3/account/whoami", me["access_token"],
                 headers=forged_header)
    refused = 0
    for i in range(6):
        try:
            login("nobody-" + user, "wrong password", headers={"X-Forwarded-For": f"203.0.113.{i + 10}"})
        except urllib.error.HTTPError as e:
            refused += e.code == 429
    print(json.dumps({"user_id": whoami.get("user_id"), "refused_429": refused}, sort_keys=True))


def write_json(path, value):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(value, f, sort_keys=True)
    os.replace(path + ".tmp", path)


def drill(directory, seconds):
    alice = login("alice", os.environ["MATRIX_HA_ALICE_PASSWORD"])
    token = alice["access_token"]
    room = api("POST", "/_matrix/client/v3/createRoom", token, {"preset": "private_chat"})["room_id"]
    send = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/send/m.room.message/"
    figures = {"acknowledged": 0, "failed": 0, "server_errors": 0, "rate_limited": 0,
               "longest_stall_s": 0.0, "errors": {}}
    acked = []

    def failed(kind, text, last_ok):
        """Counts a failed send by its kind, shows it in DIR/status, and waits before the retry."""
        figures["failed"] += 1
        figures["last_error"] = text
        figures["errors"][kind] = figures["errors"].get(kind, 0) + 1
        write_json(os.path.join(directory, "status"), dict(figures, last_ok=last_ok))
        time.sleep(0.2)

    started = time.time()
    last_ok = started
    i = 0
    while time.time() < started + seconds and not os.path.exists(os.path.join(directory, "stop")):
        txn = f"drill-{started}-{i}"
        try:
            event_id = api("PUT", send + txn, token, {"msgtype": "m.text", "body": f"drill {i}"})["event_id"]
        except urllib.error.HTTPError as e:
            if e.code == 429:
                figures["rate_limited"] += 1
                time.sleep(1)
                continue
            figures["server_errors"] += e.code >= 500
            failed(str(e.code), f"HTTP {e.code}", last_ok)
            continue
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            # A connection cut mid-answer (IncompleteRead), a timeout, an answer that is not
            # the event: counted and retried, never the end of the writer.
            failed(type(getattr(e, "reason", None) or e).__name__, f"{type(e).__name__}: {e}"[:200], last_ok)
            continue
        now = time.time()
        figures["longest_stall_s"] = round(max(figures["longest_stall_s"], now - last_ok), 2)
        last_ok = now
        acked.append(event_id)
        figures["acknowledged"] = len(acked)
        i += 1
        write_json(os.path.join(directory, "status"), dict(figures, last_ok=last_ok))
    figures["seconds"] = round(time.time() - started, 1)
    lost = 0
    for event_id in acked:
        for _attempt in range(5):
            try:
                api("GET", f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/event/"
                    f"{urllib.parse.quote(event_id)}", token)
                break
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    lost += 1
                    break
                time.sleep(1)
            except (OSError, http.client.HTTPException, ValueError):
                time.sleep(1)
        else:
            lost += 1
    write_json(os.path.join(directory, "result"), dict(figures, lost=lost))


def remember(path, messages):
    """The restore drill's before: alice sends MESSAGES messages into a new room and uploads a
    file; FILE keeps the room, the event ids and the file's checksum."""
    token = login("alice", os.environ["MATRIX_HA_ALICE_PASSWORD"])["access_token"]
    room = api("POST", "/_matrix/client/v3/createRoom", token, {"preset": "private_chat"})["room_id"]
    send = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/send/m.room.message/"
    events = []
    for i in range(messages):
        for _attempt in range(30):
            try:
                events.append(api("PUT", send + f"restore-{time.time()}-{i}", token,
                                  {"msgtype": "m.text", "body": f"before the backup {i}"})["event_id"])
                break
            except urllib.error.HTTPError as e:
                if e.code != 429:
                    raise
                time.sleep(1)
    blob = os.urandom(300_000)
    _, _, up = call("POST", BASE + "/_matrix/media/v3/upload?filename=restore.bin", token,
                    raw=blob, content_type="application/octet-stream")
    record = {"room": room, "events": events, "mxc": json.loads(up)["content_uri"],
              "sha256": hashlib.sha256(blob).hexdigest()}
    write_json(path, record)
    print(json.dumps({"events": len(events), "media_id": record["mxc"]}, sort_keys=True))


def recall(path):
    """The restore drill's after: alice logs in again, every remembered event is read back (lost:
    the ones the server no longer has) and the file is downloaded and compared."""
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    token = None
    for _attempt in range(60):
        try:
            token = login("alice", os.environ["MATRIX_HA_ALICE_PASSWORD"])["access_token"]
            break
        except (urllib.error.HTTPError, OSError):
            time.sleep(2)
    if token is None:
        sys.exit("alice cannot log in after 60 tries")
    room = urllib.parse.quote(record["room"])
    lost = 0
    for event_id in record["events"]:
        try:
            api("GET", f"/_matrix/client/v3/rooms/{room}/event/{urllib.parse.quote(event_id)}", token)
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
            lost += 1
    server, media_id = record["mxc"][len("mxc://"):].split("/", 1)
    _, _, down = call("GET", f"{BASE}/_matrix/client/v1/media/download/{server}/{media_id}", token)
    print(json.dumps({"events": len(record["events"]), "lost": lost,
                      "media_same": hashlib.sha256(down).hexdigest() == record["sha256"]},
                     sort_keys=True))


def main():
    if sys.argv[3] == "remember":
        remember(sys.argv[4], int(sys.argv[5]))
        return
    if sys.argv[3] == "recall":
        recall(sys.argv[4])
        return
    if sys.argv[3] == "forged":
        forged(sys.argv[4])
        return
    if sys.argv[3] == "drill":
        drill(sys.argv[4], int(sys.argv[5]))
        return
    messages = int(sys.argv[3])
    result = {}
    alice = login("alice", os.environ["MATRIX_HA_ALICE_PASSWORD"])
    bob = login("bob", os.environ["MATRIX_HA_BOB_PASSWORD"])
    result["logins"] = 2
    room = api("POST", "/_matrix/client/v3/createRoom", alice["access_token"],
               {"preset": "private_chat", "invite": [bob["user_id"]]})["room_id"]
    api("POST", f"/_matrix/client/v3/join/{urllib.parse.quote(room)}", bob["access_token"], {})

    sent = {"alice": [], "bob": []}
    failures = {"alice": 0, "bob": 0}
    server_errors = {"alice": 0, "bob": 0}
    rate_limited = {"alice": 0, "bob": 0}
    sending = {"alice": True, "bob": True}

    def sender(name, token):
        for i in range(messages // 2):
            txn = f"{name}-{i}-{time.time_ns()}"
            path = (f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/send/m.room.message/"
                    f"{txn}")
            for _attempt in range(10):
                try:
                    ev = api("PUT", path, token, {"msgtype": "m.text", "body": f"{name} {i}"})
                    sent[name].append(ev["event_id"])
                    break
                except urllib.error.HTTPError as e:
                    if e.code == 429:
                        # The server's message limit: wait as it says, as clients do.
                        rate_limited[name] += 1
                        wait_ms = json.loads(e.read() or b"{}").get("retry_after_ms", 1000)
                        time.sleep(min(wait_ms, 10_000) / 1000)
                        continue
                    if e.code >= 500:
                        server_errors[name] += 1
                    failures[name] += 1
                    time.sleep(0.5)
                except OSError:
                    failures[name] += 1
                    time.sleep(0.5)
        sending[name] = False

    # Each user's client long-polls /sync while both send, as a Matrix client does: the first
    # sync (before any message) gives the position; every later one must bring each new event
    # exactly once, each sender's in the order sent, without a gap (`limited`).
    synced = {"alice": [], "bob": []}
    gaps = {"alice": 0, "bob": 0}
    timeline_filter = urllib.parse.quote(json.dumps({"room": {"timeline": {"limit": 1000}}}))

    def first_sync(token):
        return api("GET", f"/_matrix/client/v3/sync?timeout=0&filter={timeline_filter}",
                   token)["next_batch"]

    sync_errors = {"alice": [], "bob": []}

    def syncer(name, token, since):
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and len(sync_errors[name]) < 5:
            # A failed /sync is retried from the same position, as clients do; each is reported.
            try:
                body = api("GET", f"/_matrix/client/v3/sync?timeout=5000&filter={timeline_filter}"
                           f"&since={urllib.parse.quote(since)}", token, timeout=60)
            except (OSError, ValueError) as e:
                sync_errors[name].append(repr(e))
                time.sleep(1)
                continue
            since = body["next_batch"]
            timeline = body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
            gaps[name] += bool(timeline.get("limited"))
            synced[name] += [e["event_id"] for e in timeline.get("events", [])
                             if e.get("type") == "m.room.message"]
            if not any(sending.values()) and set(sent["alice"] + sent["bob"]) <= set(synced[name]):
                return

    positions = {"alice": first_sync(alice["access_token"]), "bob": first_sync(bob["access_token"])}
    started = time.monotonic()
    threads = [threading.Thread(target=sender, args=("alice", alice["access_token"])),
               threading.Thread(target=sender, args=("bob", bob["access_token"]))]
    syncers = [threading.Thread(target=syncer, args=(n, t, positions[n]))
               for n, t in (("alice", alice["access_token"]), ("bob", bob["access_token"]))]
    for t in threads + syncers:
        t.start()
    for t in threads:
        t.join(timeout=900)
    elapsed = time.monotonic() - started
    for t in syncers:
        t.join(timeout=300)
    acked = sent["alice"] + sent["bob"]
    result.update(acknowledged=len(acked), failed_sends=sum(failures.values()),
                  server_errors=sum(server_errors.values()),
                  rate_limited=sum(rate_limited.values()),
                  messages_per_second=round(len(acked) / elapsed, 1))
    for name in ("alice", "bob"):
        seen = synced[name]
        result[f"{name}_sync"] = {
            "missing": len(set(acked) - set(seen)),
            "duplicates": len(seen) - len(set(seen)),
            "in_order": all([e for e in seen if e in set(sent[s])] == sent[s] for s in sent),
            "gaps": gaps[name],
            "errors": sync_errors[name],
        }

    # Media: upload, then download through the authenticated media API.
    blob = os.urandom(200_000)
    _, _, up = call("POST", BASE + "/_matrix/media/v3/upload?filename=check.bin",
                    alice["access_token"], raw=blob, content_type="application/octet-stream")
    mxc = json.loads(up)["content_uri"]
    server, media_id = mxc[len("mxc://"):].split("/", 1)
    _, _, down = call("GET", f"{BASE}/_matrix/client/v1/media/download/{server}/{media_id}",
                      bob["access_token"])
    result["media"] = {"bytes": len(blob), "same": hashlib.sha256(down).hexdigest()
                       == hashlib.sha256(blob).hexdigest(), "media_id": media_id}

    # Federation's port serves the server's signing key.
    _, _, key = call("GET", f"https://matrix.{DOMAIN}:8448/_matrix/key/v2/server")
    key = json.loads(key)
    result["federation_key"] = {"server_name": key.get("server_name"),
                                "keys": len(key.get("verify_keys", {}))}

    # Discovery on the base domain.
    _, _, server_doc = call("GET", f"https://{DOMAIN}/.well-known/matrix/server")
    _, headers, client_doc = call("GET", f"https://{DOMAIN}/.well-known/matrix/client")
    result["well_known"] = {
        "server": json.loads(server_doc),
        "client": json.loads(client_doc),
        "cors": {k.lower(): v for k, v in headers.items()}.get("access-control-allow-origin"),
    }
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
