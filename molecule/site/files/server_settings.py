#!/usr/bin/env python3
"""Reads the session settings of every server connection PgBouncer holds for Synapse, and prints
one JSON line with what it found.

    MATRIX_HA_ADMIN_PASSWORD=... MATRIX_HA_SYNAPSE_PASSWORD=... server_settings.py HOST PORT

PgBouncer's admin console (user pgbouncer_admin) says how many server connections the synapse
database has; then as many clients as that, as Synapse's role, each open a transaction (so no two
share a server connection under transaction pooling), read the settings Synapse's sessions could
change and the server's process id, and hold the transaction until every client has read. A
setting that one of Synapse's sessions changed with SET SESSION and that leaked past PgBouncer
shows up as a second value. Passwords come from the environment, never the command line.
"""
import json
import os
import sys

import psycopg2

SETTINGS = ("statement_timeout", "idle_in_transaction_session_timeout", "bytea_output",
            "default_transaction_isolation", "search_path", "lock_timeout")


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    admin = psycopg2.connect(host=host, port=port, dbname="pgbouncer", user="pgbouncer_admin",
                             password=os.environ["MATRIX_HA_ADMIN_PASSWORD"], connect_timeout=10)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SHOW SERVERS")
        names = [c.name for c in cur.description]
        servers = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    admin.close()
    wanted = max(1, sum(s["database"] == "synapse" for s in servers))

    clients, seen = [], []
    try:
        for _ in range(wanted):
            conn = psycopg2.connect(host=host, port=port, dbname="synapse", user="synapse",
                                    password=os.environ["MATRIX_HA_SYNAPSE_PASSWORD"],
                                    connect_timeout=10)
            clients.append(conn)
            # psycopg2 opens a transaction with the first statement and keeps it open.
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid(), " + ", ".join(
                    f"current_setting('{name}')" for name in SETTINGS))
                pid, *values = cur.fetchone()
                seen.append({"pid": pid, **dict(zip(SETTINGS, values, strict=True))})
    finally:
        for conn in clients:
            conn.rollback()
            conn.close()
    values = {name: sorted({s[name] for s in seen}) for name in SETTINGS}
    print(json.dumps({"server_connections": wanted, "read": len({s["pid"] for s in seen}),
                      "values": values}, sort_keys=True))


if __name__ == "__main__":
    main()
