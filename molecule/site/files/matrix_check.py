#!/usr/bin/env python3
"""Uses the site as Matrix users do, through the VIP with the site's certificate, and prints one
JSON line with what it saw.

    MATRIX_HA_ALICE_PASSWORD=... MATRIX_HA_BOB_PASSWORD=... matrix_check.py DOMAIN CA_FILE MESSAGES

Both users log in on https://matrix.DOMAIN; alice makes a room and invites bob, bob joins; both
send MESSAGES/2 messages at once; each user's /sync must return every acknowledged event exactly
once, each sender's in the order sent. A file is uploaded and downloaded back. The federation
port answers /_matrix/key/v2/server with the server's signing key, and the base domain serves
/.well-known/matrix/server and /client. Every request is bounded by a timeout, every loop by a
count. Passwords come from the environment, never the command line.
"""
import hashlib
import json
import os
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

DOMAIN, CA, MESSAGES = sys.argv[1], sys.argv[2], int(sys.argv[3])
BASE = f"https://matrix.{DOMAIN}"
TLS = ssl.create_default_context(cafile=CA)


def call(method, url, token=None, body=None, raw=None, content_type="application/json", timeout=30):
    headers = {}
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


def api(method, path, token=None, body=None):
    status, _, payload = call(method, BASE + path, token, body)
    return json.loads(payload) if payload else {}


def login(user, password):
    return api("POST", "/_matrix/client/v3/login", body={
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    })


def main():
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

    def sender(name, token):
        for i in range(MESSAGES // 2):
            txn = f"{name}-{i}-{time.time_ns()}"
            path = (f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/send/m.room.message/"
                    f"{txn}")
            for _attempt in range(3):
                try:
                    ev = api("PUT", path, token, {"msgtype": "m.text", "body": f"{name} {i}"})
                    sent[name].append(ev["event_id"])
                    break
                except urllib.error.HTTPError as e:
                    if e.code >= 500:
                        server_errors[name] += 1
                    failures[name] += 1
                    time.sleep(0.5)
                except OSError:
                    failures[name] += 1
                    time.sleep(0.5)

    started = time.monotonic()
    threads = [threading.Thread(target=sender, args=("alice", alice["access_token"])),
               threading.Thread(target=sender, args=("bob", bob["access_token"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    elapsed = time.monotonic() - started
    acked = sent["alice"] + sent["bob"]
    result.update(acknowledged=len(acked), failed_sends=sum(failures.values()),
                  server_errors=sum(server_errors.values()),
                  messages_per_second=round(len(acked) / elapsed, 1))

    # Each user's /sync returns every acknowledged event exactly once, each sender's in order.
    for name, token in (("alice", alice["access_token"]), ("bob", bob["access_token"])):
        seen = []
        since = None
        deadline = time.monotonic() + 120
        filt = urllib.parse.quote(json.dumps({"room": {"timeline": {"limit": 1000}}}))
        while time.monotonic() < deadline:
            path = f"/_matrix/client/v3/sync?timeout=5000&filter={filt}"
            if since:
                path += f"&since={urllib.parse.quote(since)}"
            body = api("GET", path, token)
            since = body["next_batch"]
            timeline = body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
            seen += [e["event_id"] for e in timeline.get("events", [])
                     if e.get("type") == "m.room.message"]
            if set(acked) <= set(seen):
                break
        missing = len(set(acked) - set(seen))
        dupes = len(seen) - len(set(seen))
        in_order = all(
            [e for e in seen if e in set(sent[s])] == sent[s] for s in sent
        )
        result[f"{name}_sync"] = {"missing": missing, "duplicates": dupes, "in_order": in_order}

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
