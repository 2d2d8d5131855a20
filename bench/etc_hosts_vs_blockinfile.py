#!/usr/bin/env python3
"""ms/task of z3r0d3v.matrix_ha.etc_hosts against ansible.builtin.blockinfile, in one run.

Both playbooks make the same edits to a scratch hosts file on the local connection: task i
writes its own marked block mapping host-i. Each playbook runs on a fresh file (every task
changes something) and again on the result (no task changes anything). A play of 50
`ansible.builtin.ping` tasks (a Python no-op module) and an empty play give the floor and the
fixed start-up cost, which is subtracted: ms/task = (play time - empty play time) / tasks.

It also reports the peak memory (max RSS) of one module process of each kind, run outside
Ansible with the same arguments: the etc_hosts binary, and blockinfile's AnsiballZ payload
as Ansible keeps it with ANSIBLE_KEEP_REMOTE_FILES=1.

Usage: .venv/bin/python bench/etc_hosts_vs_blockinfile.py [--tasks 50] [--rounds 3]
(after scripts/setup). Prints a table; nothing is asserted.
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import sys

from benchlib import ROOT, ansible_env, machine, peak_rss_kib, per_task_ms, play, require_setup, run_playbook, scratch

STOCK = "127.0.0.1\tlocalhost\n127.0.1.1\tbench.chat.z3r0d3v.com\tbench\n"


def address(i):
    return f"10.20.{i // 250}.{i % 250 + 1}"


def names(i):
    return [f"host-{i}.chat.z3r0d3v.com", f"host-{i}"]


def etc_hosts_task(i, path):
    return {
        "name": f"etc_hosts {i}",
        "z3r0d3v.matrix_ha.etc_hosts": {
            "path": path,
            "marker": f"bench-{i}",
            "entries": [{"ip": address(i), "names": names(i)}],
        },
    }


def blockinfile_task(i, path):
    return {
        "name": f"blockinfile {i}",
        "ansible.builtin.blockinfile": {
            "path": path,
            "marker": f"# {{mark}} bench-{i}",
            "block": f"{address(i)}\t{' '.join(names(i))}",
        },
    }








def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    require_setup()
    work = scratch()
    try:
        env = ansible_env(work)
        hosts = os.path.join(work, "hosts")
        books = {}
        for name, tasks in {
            "empty play": [],
            "ansible.builtin.ping (Python no-op)": [
                {"name": f"ping {i}", "ansible.builtin.ping": {}} for i in range(args.tasks)
            ],
            "ansible.builtin.blockinfile": [blockinfile_task(i, hosts) for i in range(args.tasks)],
            "z3r0d3v.matrix_ha.etc_hosts": [etc_hosts_task(i, hosts) for i in range(args.tasks)],
        }.items():
            books[name] = os.path.join(work, f"{len(books)}.json")
            with open(books[name], "w") as f:
                f.write(play(tasks))

        # name -> {"changing": [seconds], "unchanged": [seconds]}
        times = {name: {"changing": [], "unchanged": []} for name in books}
        for _ in range(args.rounds):
            for name, book in books.items():  # interleaved, so drift hits every kind alike
                with open(hosts, "w") as f:
                    f.write(STOCK)
                times[name]["changing"].append(run_playbook(book, env))
                times[name]["unchanged"].append(run_playbook(book, env))

        base = statistics.median(times["empty play"]["changing"] + times["empty play"]["unchanged"])
        per_task = {
            name: {kind: per_task_ms(values, base, args.tasks) for kind, values in runs.items()}
            for name, runs in times.items()
            if name != "empty play"
        }

        # Peak memory of one module process of each kind.
        with open(hosts, "w") as f:
            f.write(STOCK)
        args_file = os.path.join(work, "args.json")
        with open(args_file, "w") as f:
            json.dump(etc_hosts_task(0, hosts)["z3r0d3v.matrix_ha.etc_hosts"], f)
        rss_native = peak_rss_kib([os.path.join(ROOT, "plugins", "modules", "etc_hosts"), args_file])
        remote_tmp = env["ANSIBLE_REMOTE_TEMP"]
        keep_env = dict(env, ANSIBLE_KEEP_REMOTE_FILES="1", ANSIBLE_PIPELINING="false")
        one = os.path.join(work, "one.json")
        with open(one, "w") as f:
            f.write(play([blockinfile_task(0, hosts)]))
        run_playbook(one, keep_env)
        payloads = glob.glob(os.path.join(remote_tmp, "ansible-tmp-*", "AnsiballZ_blockinfile.py"))
        rss_python = peak_rss_kib([sys.executable, payloads[0]]) if payloads else None

        size = os.path.getsize(os.path.join(ROOT, "plugins", "modules", "etc_hosts"))
        print(f"machine: {machine()}")
        print(f"{args.tasks} tasks per play, median of {args.rounds} rounds, local connection, "
              f"pipelining on; fixed play start-up {base * 1000:.0f} ms subtracted")
        print(f"etc_hosts binary: {size / 1024:.0f} KiB\n")
        ours = per_task["z3r0d3v.matrix_ha.etc_hosts"]
        print(f"{'task':38} {'ms/task changing':>17} {'ms/task unchanged':>18} {'ratio to etc_hosts':>19}")
        for name, ms in per_task.items():
            ratios = f"{ms['changing'] / ours['changing']:.2f}x / {ms['unchanged'] / ours['unchanged']:.2f}x"
            print(f"{name:38} {ms['changing']:17.1f} {ms['unchanged']:18.1f} {ratios:>19}")
        print()
        print(f"peak RSS of one module process: etc_hosts {rss_native / 1024:.1f} MiB", end="")
        if rss_python:
            print(f", blockinfile (AnsiballZ) {rss_python / 1024:.1f} MiB, "
                  f"ratio {rss_python / rss_native:.1f}x")
        else:
            print(" (blockinfile payload not found)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
