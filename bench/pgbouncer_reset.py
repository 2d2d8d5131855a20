#!/usr/bin/env python3
"""tps through PgBouncer with the reset pgbouncer_tune writes for transaction pooling, in one run.

pgbouncer_tune writes `server_reset_query = DISCARD ALL` with `server_reset_query_always = 1`
when the pool mode is transaction (or statement), so that a session setting one client makes
never reaches another client's queries. PgBouncer then runs DISCARD ALL on a server connection
after every transaction, one more round trip and statement per transaction. This measures what
that costs against the alternatives, all in the same run:

- PostgreSQL directly, the reference;
- (a) transaction pooling without a reset, PgBouncer's default for that mode;
- (b) transaction pooling with DISCARD ALL after every transaction, what the module writes;
- (c) session pooling, where PgBouncer's default reset (DISCARD ALL) runs only when a client
  leaves.

A private PostgreSQL 15 cluster (initdb into a scratch directory, fsync off, so the figures are
CPU-bound and the reset's share is at its largest) and three PgBouncer processes run on free
loopback ports, as the unprivileged postgres user when the script runs as root. The login role's
password is made for the run: PostgreSQL and PgBouncer's auth file get its SCRAM verifier only,
the clients read it from a mode-0600 password file. Each PgBouncer pools the database with a
pool of one server connection per client (as pgbouncer_tune sizes it: every application
connection can have one).

pgbench drives the load through each target, with a fixed number of transactions per client:
its select-only builtin (-S: one SELECT per transaction, autocommit) and a transaction shaped
like Synapse's usual ones (BEGIN ISOLATION LEVEL REPEATABLE READ, three reads by key, one
insert, COMMIT), simple query protocol as psycopg2 uses. Rounds interleave the targets (each
round starts one target later), so drift hits every target alike; the ratio to (a) is taken
within each round. Before the runs, one client's `SET statement_timeout` is checked against the
next client's `SHOW statement_timeout` through each PgBouncer: what the reset is for.

Usage: .venv/bin/python bench/pgbouncer_reset.py [--rounds 5] [--clients 8]
[--select-transactions 5000] [--synapse-transactions 1000]
(Debian's postgresql-15, postgresql-client-15 and pgbouncer; as root, or as a user PostgreSQL
can run as). Everything is stopped by its PID at the end. Prints a table; nothing is asserted.
"""

import argparse
import base64
import hashlib
import hmac
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

from benchlib import free_port, machine, scratch

PG_BIN = "/usr/lib/postgresql/15/bin"
PGBOUNCER = "/usr/sbin/pgbouncer"
ROLE = "synapse"

# name -> the pool lines of its pgbouncer.ini (None: PostgreSQL directly)
TARGETS = {
    "PostgreSQL directly": None,
    "(a) transaction pooling, no reset": "pool_mode = transaction\n",
    "(b) transaction pooling, DISCARD ALL always (ours)": (
        "pool_mode = transaction\nserver_reset_query = DISCARD ALL\nserver_reset_query_always = 1\n"
    ),
    "(c) session pooling, DISCARD ALL on client release": "pool_mode = session\n",
}
BASE = "(a) transaction pooling, no reset"

SYNAPSE_LIKE = """\\set aid random(1, 100000 * :scale)
\\set bid random(1, :scale)
\\set tid random(1, 10 * :scale)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT bbalance FROM pgbench_branches WHERE bid = :bid;
SELECT tbalance FROM pgbench_tellers WHERE tid = :tid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, 0, CURRENT_TIMESTAMP);
COMMIT;
"""


def scram_verifier(password):
    """A SCRAM-SHA-256 verifier of `password` as PostgreSQL stores it (RFC 5802, 4096 rounds)."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 4096)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256$4096:{b64(salt)}${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}"


class Runner:
    """Runs the servers and clients as one unprivileged user: postgres when this is root."""

    def __init__(self, work):
        self.work = work
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")  # the postgresql packages create it
            self.ids = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            os.chown(work, user.pw_uid, user.pw_gid)
        else:
            user = pwd.getpwuid(os.geteuid())
            self.ids = {}
        self.user = user.pw_name
        os.chmod(work, 0o700)
        self.env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": work, "PGCONNECT_TIMEOUT": "10",
                    "PGPASSFILE": os.path.join(work, "pgpass")}

    def private(self, name, text):
        """Writes work/name, mode 0600, owned by the user the servers run as."""
        path = os.path.join(self.work, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if self.ids:
            os.chown(path, self.ids["user"], self.ids["group"])
        return path

    def run(self, argv, stdin=None, timeout=120):
        try:
            out = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=self.env,
                                 cwd=self.work, timeout=timeout, **self.ids)
        except subprocess.TimeoutExpired:
            sys.exit(f"{os.path.basename(argv[0])} did not finish within {timeout} s")
        if out.returncode != 0:
            sys.exit(f"{os.path.basename(argv[0])} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out.stdout

    def start(self, argv, log):
        with open(self.private(log, ""), "w") as f:
            return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=f, env=self.env,
                                    cwd=self.work, **self.ids)


def stop(proc, sig):
    """Sends `sig` to the process we started, waits 10 s at most, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(port, proc, what, log):
    for _ in range(100):  # bounded: 10 s
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    stop(proc, signal.SIGKILL)
    with open(log) as f:
        sys.exit(f"{what} did not listen on 127.0.0.1:{port}:\n{f.read()[-3000:]}")


def psql(runner, port, sql, superuser=False):
    """Runs `sql` from standard input: as the superuser over the cluster's Unix socket (peer), or
    as the role over TCP with the password file."""
    where = ["-h", runner.work, "-U", runner.user, "-d", "postgres"] if superuser else \
        ["-h", "127.0.0.1", "-U", ROLE, "-d", ROLE]
    return runner.run([f"{PG_BIN}/psql", *where, "-p", str(port), "-X", "-A", "-t", "-q",
                       "-v", "ON_ERROR_STOP=1"], stdin=sql).strip()


def start_postgres(runner, port):
    data = os.path.join(runner.work, "data")
    runner.run([f"{PG_BIN}/initdb", "-D", data, "-U", runner.user, "-E", "UTF8", "--locale=C",
                "--auth-local=peer", "--auth-host=scram-sha-256", "--no-sync"])
    proc = runner.start([f"{PG_BIN}/postgres", "-D", data, "-c", f"port={port}",
                         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={runner.work}",
                         "-c", "max_connections=100", "-c", "fsync=off"], "postgres.log")
    wait_for(port, proc, "PostgreSQL", os.path.join(runner.work, "postgres.log"))
    for _ in range(100):  # bounded: 10 s; TCP accepts before the server takes logins
        if subprocess.run([f"{PG_BIN}/pg_isready", "-q", "-h", runner.work, "-p", str(port)],
                          env=runner.env, **runner.ids).returncode == 0:
            return proc
        time.sleep(0.1)
    stop(proc, signal.SIGKILL)
    sys.exit("PostgreSQL did not accept logins within 10 s")


def start_pgbouncer(runner, name, pool, port, pg_port, clients):
    ini = runner.private(f"{name}.ini", (
        f"[databases]\n{ROLE} = host=127.0.0.1 port={pg_port} dbname={ROLE}\n\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir = {runner.work}\n"
        f"auth_type = scram-sha-256\nauth_file = {runner.work}/userlist.txt\n{pool}"
        f"max_client_conn = 100\ndefault_pool_size = {clients}\nreserve_pool_size = 5\n"
    ))
    proc = runner.start([PGBOUNCER, ini], f"{name}.log")
    wait_for(port, proc, f"PgBouncer {name}", os.path.join(runner.work, f"{name}.log"))
    return proc


def setting_leaks(runner, port):
    """Whether a session SET of one client shows in the next client's session (PgBouncer hands
    the last released server connection out first)."""
    psql(runner, port, "SET statement_timeout = '4321ms';")
    return psql(runner, port, "SHOW statement_timeout;") == "4321ms"


def pgbench(runner, port, workload, clients, transactions):
    out = runner.run([f"{PG_BIN}/pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", ROLE, "-n",
                      "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
                      "-t", str(transactions), *workload, ROLE])
    processed = re.search(r"actually processed: (\d+)/(\d+)", out)
    tps = re.search(r"^tps = ([\d.]+)", out, re.M)
    latency = re.search(r"^latency average = ([\d.]+) ms", out, re.M)
    if not (processed and tps and latency) or processed.group(1) != processed.group(2):
        sys.exit(f"pgbench did not finish every transaction:\n{out}")
    return float(tps.group(1)), float(latency.group(1))


def version(argv):
    out = subprocess.run(argv, capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--select-transactions", type=int, default=5000, help="-S, per client and run")
    parser.add_argument("--synapse-transactions", type=int, default=1000, help="Synapse-like, per client and run")
    args = parser.parse_args()
    for path in (f"{PG_BIN}/initdb", f"{PG_BIN}/pgbench", PGBOUNCER):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: install postgresql-15 and pgbouncer (scripts/setup)")

    work = scratch()
    procs = []  # (process, its stop signal), stopped in reverse order
    try:
        runner = Runner(work)
        password = secrets.token_hex(16)
        verifier = scram_verifier(password)
        runner.private("pgpass", f"*:*:{ROLE}:{ROLE}:{password}\n")
        runner.private("userlist.txt", f'"{ROLE}" "{verifier}"\n')
        script = runner.private("synapse_like.sql", SYNAPSE_LIKE)

        pg_port = free_port()
        procs.append((start_postgres(runner, pg_port), signal.SIGINT))  # fast shutdown
        psql(runner, pg_port, f"CREATE ROLE {ROLE} LOGIN PASSWORD '{verifier}';\n"
             f"CREATE DATABASE {ROLE} OWNER {ROLE} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';\n",
             superuser=True)
        runner.run([f"{PG_BIN}/pgbench", "-h", "127.0.0.1", "-p", str(pg_port), "-U", ROLE, "-i", "-q",
                    "-s", "1", ROLE])

        ports = {}
        for i, (name, pool) in enumerate(TARGETS.items()):
            if pool is None:
                ports[name] = pg_port
                continue
            ports[name] = free_port()
            procs.append((start_pgbouncer(runner, f"pgbouncer{i}", pool, ports[name], pg_port, args.clients),
                          signal.SIGTERM))  # immediate shutdown: nothing is in flight

        leaks = {name: setting_leaks(runner, port) for name, port in ports.items() if TARGETS[name]}
        # workload -> (pgbench arguments, transactions per client and run)
        workloads = {"select-only (-S)": (["-S"], args.select_transactions),
                     "Synapse-like transaction": (["-f", script], args.synapse_transactions)}
        for port in ports.values():  # warm-up: server connections opened, caches filled
            for workload, transactions in workloads.values():
                pgbench(runner, port, workload, args.clients, max(1, transactions // 10))

        # workload -> target -> [(tps, latency ms)], one per round
        runs = {w: {name: [] for name in TARGETS} for w in workloads}
        names = list(TARGETS)
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for w, (workload, transactions) in workloads.items():
                for name in order:
                    runs[w][name].append(pgbench(runner, ports[name], workload, args.clients, transactions))
        elapsed = time.perf_counter() - start

        print(f"machine: {machine(ansible=False)}; 1-minute load average {load_before:.2f} before the "
              f"runs, {os.getloadavg()[0]:.2f} after")
        print(f"{version([f'{PG_BIN}/postgres', '--version'])}, {version([PGBOUNCER, '--version'])}; "
              f"{args.clients} clients; transactions per client and run: {args.select_transactions} "
              f"select-only, {args.synapse_transactions} Synapse-like; "
              f"{args.rounds} rounds interleaved ({elapsed:.0f} s)")
        for name, leaked in leaks.items():
            print(f"{name}: one client's SET statement_timeout {'reaches' if leaked else 'does not reach'} "
                  "the next client")
        print()
        print("| workload | target | tps (median) | min | max | latency ms (median) | ratio to (a), median (min-max) |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for w, targets in runs.items():
            for name, values in targets.items():
                tps = [v[0] for v in values]
                ratios = [t / b[0] for t, b in zip(tps, targets[BASE], strict=True)]
                print(f"| {w} | {name} | {statistics.median(tps):.0f} | {min(tps):.0f} | {max(tps):.0f} | "
                      f"{statistics.median(v[1] for v in values):.3f} | {statistics.median(ratios):.2f} "
                      f"({min(ratios):.2f}-{max(ratios):.2f}) |")
    finally:
        for proc, sig in reversed(procs):
            stop(proc, sig)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
