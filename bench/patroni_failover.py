"""Failover of a real three-member Patroni cluster configured by patroni_bootstrap.

Runs tests/tests/patroni_failover.rs (etcd, three Patroni members with PostgreSQL, all on
loopback, started and stopped by the test) several times for each timing: a bounded write loop
runs against the primary, the primary's Patroni and PostgreSQL are killed with SIGKILL, and the
seconds from the kill to the first write the new primary acknowledges are read from the test's
output. Every run also checks that no acknowledged row was lost (synchronous mode).

Timings compared (ttl, loop_wait, retry_timeout):
  - 30,10,10  Patroni's defaults, which are the module's defaults
  - 20,2,9    the tightest timing that keeps Patroni's rule (loop_wait + 2 x retry_timeout <= ttl)

Usage: .venv/bin/python bench/patroni_failover.py [ROUNDS]   (default 3; needs root)
"""

import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMINGS = ["30,10,10", "20,2,9"]


def one_run(timing):
    env = dict(os.environ, MATRIX_HA_FAILOVER_TIMING=timing)
    out = subprocess.run(
        ["cargo", "test", "--quiet", "--locked", "-p", "matrix-ha-tests", "--test",
         "patroni_failover", "--", "--nocapture"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    match = re.search(r"failover_seconds=([\d.]+) .*acknowledged_rows=(\d+) "
                      r"failed_writes=(\d+) lost_rows=(\d+)", out.stdout)
    if out.returncode != 0 or not match:
        sys.exit(f"the failover test failed for timing {timing}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return float(match.group(1)), int(match.group(2)), int(match.group(4))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(f"rounds per timing: {rounds}")
    print("| ttl, loop_wait, retry_timeout | failover s (median) | min | max | acknowledged rows | lost |")
    print("|---|---:|---:|---:|---:|---:|")
    for timing in TIMINGS:
        runs = [one_run(timing) for _ in range(rounds)]
        seconds = [r[0] for r in runs]
        print(f"| {timing} | {statistics.median(seconds):.1f} | {min(seconds):.1f} | "
              f"{max(seconds):.1f} | {sum(r[1] for r in runs)} | {sum(r[2] for r in runs)} |",
              flush=True)


if __name__ == "__main__":
    main()
