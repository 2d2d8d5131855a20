#!/usr/bin/env python3
"""Benchmark of VIP failover between two real keepalived peers (keepalived_vip).

Runs the failover test (modules/keepalived_vip/tests/failover.rs: two network namespaces, a
veth pair, Debian's keepalived in each, configurations rendered by the module) --runs times for
each check interval, and prints the seconds from the holder's failed check (its flag file
removed) to the VIP being on the other node only, next to the first election after start.
advert_int 1, check_fall 2, check_rise 2, nopreempt, unicast peers.

The check must fail check_fall (2) times in a row: the first failing run comes 0 to 1 interval
after the flag file goes, so the window is (fall - 1) x interval to fall x interval. The VIP
then moves at once: the holder goes to FAULT and sends a priority-0 advert, so the backup does
not wait for 3 missed adverts.

Usage (as root): bench/keepalived_failover.py [--runs 3] [--intervals 1,2]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_run(interval):
    env = dict(os.environ, MATRIX_HA_BENCH_CHECK_INTERVAL=str(interval))
    out = subprocess.run(
        ["cargo", "test", "--quiet", "--release", "-p", "keepalived_vip", "--test", "failover",
         "--", "--nocapture"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    if out.returncode != 0:
        sys.exit(f"the failover test failed:\n{out.stdout}\n{out.stderr}")
    figures = dict(re.findall(r"keepalived_failover (\w+)=([0-9.]+)", out.stdout))
    if not figures:
        sys.exit("the failover test printed no figures (was it skipped? it needs root)")
    return float(figures["initial_election_seconds"]), float(figures["check_failure_to_move_seconds"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--intervals", default="1,2")
    args = parser.parse_args()
    print("| check_interval (s) | check window (s) | first election (s, median) | failure to move (s, median) | min / max |")
    print("|---:|---:|---:|---:|---:|")
    for interval in [int(i) for i in args.intervals.split(",")]:
        runs = [one_run(interval) for _ in range(args.runs)]
        election = statistics.median(r[0] for r in runs)
        moves = [r[1] for r in runs]
        floor = f"{interval}-{2 * interval}"
        print(f"| {interval} | {floor} | {election:.2f} | {statistics.median(moves):.2f} "
              f"| {min(moves):.2f} / {max(moves):.2f} |")


if __name__ == "__main__":
    main()
