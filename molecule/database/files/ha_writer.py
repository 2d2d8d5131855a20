#!/usr/bin/env python3
"""The failover drill's writer: numbered rows into the Synapse database, the way Synapse reaches it
(PgBouncer on the Synapse host -> the VIP -> HAProxy -> the Patroni primary).

  ha_writer.py write DIR SECONDS   insert rows 1, 2, ... one transaction each, until DIR/stop exists
                                   or SECONDS pass; every id the server acknowledged (COMMIT
                                   returned) is appended to DIR/acked, and DIR/status holds the
                                   counts and the time of the last acknowledged row
  ha_writer.py check DIR [T ...]   compare DIR/acked with the table: JSON with rows acknowledged,
                                   rows present, rows lost (acknowledged but missing), the outages
                                   (failed attempts) and stalls (over 1 s between acknowledged
                                   rows) the writer saw, in seconds, and for each epoch time T the
                                   seconds from T to the first acknowledged row after the stall
                                   around it (0 when writes did not stall)

The connection string comes from HA_WRITER_DSN, the password from PGPASSWORD (never argv).
"""
import json
import os
import sys
import time

import psycopg2

TABLE = "matrix_ha_drill"


def connect():
    conn = psycopg2.connect(os.environ["HA_WRITER_DSN"], connect_timeout=3)
    conn.autocommit = True
    return conn


def write(directory, seconds):
    deadline = time.time() + seconds
    stop = os.path.join(directory, "stop")
    status_path = os.path.join(directory, "status")
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cur.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now())")
    conn = None
    acked = failed = 0
    last_ok = 0.0
    outages = []  # [first failure, first success after it]
    stalls = []  # [last acknowledged row, next one] when more than 1 s apart
    row = 0
    with open(os.path.join(directory, "acked"), "a", encoding="ascii") as ack:
        while time.time() < deadline and not os.path.exists(stop):
            row += 1
            try:
                if conn is None:
                    conn = connect()
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (row,))
                ack.write(f"{row}\n")
                ack.flush()
                acked += 1
                now = time.time()
                if last_ok and now - last_ok > 1.0:
                    stalls.append([last_ok, now])
                last_ok = now
                if outages and outages[-1][1] is None:
                    outages[-1][1] = last_ok
            except psycopg2.Error:
                failed += 1
                if not outages or outages[-1][1] is not None:
                    outages.append([time.time(), None])
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg2.Error:
                        pass
                conn = None
                time.sleep(0.2)
            with open(status_path + ".tmp", "w", encoding="ascii") as status:
                json.dump({"acked": acked, "failed": failed, "last_ok": last_ok, "outages": outages, "stalls": stalls}, status)
            os.replace(status_path + ".tmp", status_path)
            time.sleep(0.02)


def resumed_after(stalls, t):
    """Seconds from t to the first acknowledged row after the stall (more than 1 s without one)
    that spans t or begins within 5 s after it; 0 when writes never stalled there."""
    for start, end in stalls:
        if end > t and start <= t + 5:
            return round(end - t, 1)
    return 0.0


def check(directory, times):
    with open(os.path.join(directory, "acked"), encoding="ascii") as ack:
        acked = {int(line) for line in ack if line.strip()}
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {TABLE}")
        present = {r[0] for r in cur.fetchall()}
    with open(os.path.join(directory, "status"), encoding="ascii") as status:
        seen = json.load(status)
    outages = seen["outages"]
    print(json.dumps({
        "acked": len(acked),
        "present": len(present),
        "lost": sorted(acked - present)[:20],
        "lost_count": len(acked - present),
        "failed_attempts": seen["failed"],
        "outage_seconds": [round(end - start, 1) if end is not None else None for start, end in outages],
        "stall_seconds": [round(end - start, 1) for start, end in seen["stalls"]],
        "resumed_after": [resumed_after(seen["stalls"], t) for t in times],
    }))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], float(sys.argv[3]))
    else:
        check(sys.argv[2], [float(t) for t in sys.argv[3:]])
