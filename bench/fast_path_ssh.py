#!/usr/bin/env python3
"""ms/task of native modules over SSH: the fast path against the alternatives, in one run.

An sshd started for the run on 127.0.0.1 (keys made for the run) is the target; ControlPersist
is on, as Ansible sets it by default. Each play has N tasks on one host:

- z3r0d3v.matrix_ha.etc_hosts through the fast path (the cache warmed by an earlier play);
- the same module as a plain binary module (`matrix_ha_fast_path: false`), what Ansible does
  without our action plugin;
- ansible.builtin.blockinfile doing the same edits, with pipelining on;
- ansible.builtin.raw running the cached binary on an args file already on the host: one SSH
  command per task, the floor any module execution can reach.

Each task writes its own marked block, so the first run of a play changes the file and the
second does not; both are timed. The empty play's time is subtracted; ms/task = rest / N.

Usage: .venv/bin/python bench/fast_path_ssh.py [--tasks 30] [--rounds 3] (root, after
scripts/setup). Prints a table; nothing is asserted.
"""

import argparse
import glob
import json
import os
import shutil
import statistics

from benchlib import (
    Sshd,
    ansible_env,
    machine,
    per_task_ms,
    play,
    require_setup,
    run_playbook,
    scratch,
    stop_ssh_masters,
)

STOCK = "127.0.0.1\tlocalhost\n"


def entry(i):
    return {"ip": f"10.20.{i // 250}.{i % 250 + 1}", "names": [f"host-{i}.chat.z3r0d3v.com", f"host-{i}"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    require_setup()

    work = scratch()
    sshd = None
    env = None
    try:
        sshd = Sshd(work)
        inventory = sshd.inventory(os.path.join(work, "inventory.ini"))
        env = ansible_env(work)
        hosts = os.path.join(work, "hosts")
        cache = os.path.join(work, "cache")
        common = ["-i", inventory, "-e", f"matrix_ha_remote_cache={cache}"]
        pipelined = dict(env, ANSIBLE_PIPELINING="true")

        def etc_hosts(i):
            return {"z3r0d3v.matrix_ha.etc_hosts": {"path": hosts, "marker": f"b{i}", "entries": [entry(i)]}}

        def blockinfile(i):
            e = entry(i)
            return {"ansible.builtin.blockinfile": {
                "path": hosts, "marker": f"# {{mark}} b{i}", "block": f"{e['ip']}\t{' '.join(e['names'])}"}}

        # Warm the cache, then find the cached binary for the raw floor.
        warm = os.path.join(work, "warm.json")
        with open(warm, "w") as f:
            f.write(play([etc_hosts(0)], hosts="target"))
        with open(hosts, "w") as f:
            f.write(STOCK)
        run_playbook(warm, env, common)
        binary = glob.glob(os.path.join(cache, "etc_hosts-*"))[0]
        raw_args = []
        for i in range(args.tasks):
            path = os.path.join(work, f"args-{i}.json")
            with open(path, "w") as f:
                json.dump({"path": hosts, "marker": f"b{i}", "entries": [entry(i)]}, f)
            raw_args.append(path)

        plays = {
            "empty play": ([], env, []),
            "etc_hosts, fast path": ([etc_hosts(i) for i in range(args.tasks)], env, []),
            "etc_hosts, plain binary module": (
                [etc_hosts(i) for i in range(args.tasks)], env, ["-e", "matrix_ha_fast_path=false"]),
            "blockinfile, pipelining on": ([blockinfile(i) for i in range(args.tasks)], pipelined, []),
            "raw exec of the cached binary": (
                [{"ansible.builtin.raw": f"{binary} {raw_args[i]}"} for i in range(args.tasks)], env, []),
        }
        books = {}
        for n, (name, (tasks, _, _)) in enumerate(plays.items()):
            books[name] = os.path.join(work, f"play-{n}.json")
            with open(books[name], "w") as f:
                f.write(play(tasks, hosts="target"))

        times = {name: {"changing": [], "unchanged": []} for name in plays}
        for _ in range(args.rounds):
            for name, (_, play_env, extra) in plays.items():  # interleaved
                with open(hosts, "w") as f:
                    f.write(STOCK)
                times[name]["changing"].append(run_playbook(books[name], play_env, common + extra))
                times[name]["unchanged"].append(run_playbook(books[name], play_env, common + extra))

        base = statistics.median(times["empty play"]["changing"] + times["empty play"]["unchanged"])
        per_task = {
            name: {kind: per_task_ms(values, base, args.tasks) for kind, values in runs.items()}
            for name, runs in times.items()
            if name != "empty play"
        }
        fast = per_task["etc_hosts, fast path"]
        print(f"machine: {machine()}")
        print(f"SSH to 127.0.0.1 with ControlPersist; {args.tasks} tasks per play, median of "
              f"{args.rounds} rounds; play start-up {base * 1000:.0f} ms subtracted\n")
        print(f"{'task':34} {'ms/task changing':>17} {'ms/task unchanged':>18} {'vs fast path':>15}")
        for name, ms in per_task.items():
            ratio = f"{ms['changing'] / fast['changing']:.2f}x / {ms['unchanged'] / fast['unchanged']:.2f}x"
            print(f"{name:34} {ms['changing']:17.1f} {ms['unchanged']:18.1f} {ratio:>15}")
    finally:
        if env:
            stop_ssh_masters(env)
        if sshd:
            sshd.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
