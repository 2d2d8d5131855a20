#!/usr/bin/env python3
"""Benchmark of the dynamic inventory: `matrix_inventory --list` for 10,000 hosts.

Writes a directory of large-scale site files (19 servers each) totalling at least --hosts hosts,
then prints how long `matrix_inventory --site DIR --list` takes (best and median of --runs),
next to what Ansible itself spends on the same inventory in the same run:
  - ansible-inventory reading the equivalent static YAML inventory (the file an operator would
    otherwise maintain by hand), and
  - ansible-inventory through the script form (matrix_inventory + Ansible's parsing).
The target for matrix_inventory alone is 50 ms for 10,000 hosts.

Usage: bench/inventory_list.py [--hosts 10000] [--runs 10] [--no-ansible]
Builds the release binary with cargo unless MATRIX_HA_INVENTORY_BIN names one.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS_PER_SITE = 19  # a large site


def binary():
    explicit = os.environ.get("MATRIX_HA_INVENTORY_BIN")
    if explicit:
        return explicit
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "-p", "matrix-inventory"], cwd=ROOT, check=True
    )
    return os.path.join(ROOT, "target", "release", "matrix_inventory")


def write_sites(directory, hosts):
    sites = -(-hosts // HOSTS_PER_SITE)
    for i in range(sites):
        with open(os.path.join(directory, "c%04d.chat.z3r0d3v.com.yml" % i), "w") as f:
            f.write(
                "domain: c%04d.chat.z3r0d3v.com\nscale: large\n"
                "network: 10.%d.%d.0/24\nvip: 10.%d.%d.10\n"
                % (i, i // 256, i % 256, i // 256, i % 256)
            )
    return sites


def timed(cmd, env=None, runs=1):
    """Wall-clock seconds of each run, the output going to a file (not through this process)."""
    times = []
    with tempfile.TemporaryFile() as out:
        for _ in range(runs):
            out.seek(0)
            out.truncate()
            start = time.perf_counter()
            proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.PIPE)
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                sys.exit("%s failed:\n%s" % (" ".join(cmd), proc.stderr.decode(errors="replace")))
        out.seek(0)
        return times, out.read()


def static_inventory(doc):
    """The script-inventory JSON as an equivalent static YAML (JSON is YAML) inventory."""
    hostvars = doc["_meta"]["hostvars"]
    groups = {}
    for name, body in doc.items():
        if name in ("_meta", "all"):
            continue
        group = {}
        if body.get("hosts"):
            group["hosts"] = {h: hostvars.get(h, {}) for h in body["hosts"]}
        if body.get("vars"):
            group["vars"] = body["vars"]
        if body.get("children"):
            group["children"] = {c: None for c in body["children"]}
        groups[name] = group
    return {"all": {"children": groups}}


def ms(seconds):
    return "%.1f ms" % (seconds * 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-ansible", action="store_true", help="skip the ansible-inventory runs")
    args = parser.parse_args()

    exe = binary()
    with tempfile.TemporaryDirectory() as tmp:
        sites_dir = os.path.join(tmp, "sites")
        os.mkdir(sites_dir)
        sites = write_sites(sites_dir, args.hosts)
        one_site = os.path.join(sites_dir, sorted(os.listdir(sites_dir))[0])

        timed([exe, "--site", sites_dir, "--list"])  # warm the page cache
        times, out = timed([exe, "--site", sites_dir, "--list"], runs=args.runs)
        doc = json.loads(out)
        hosts = len(doc["_meta"]["hostvars"])
        single, _ = timed([exe, "--site", one_site, "--list"], runs=args.runs)

        best, median = min(times), statistics.median(times)
        print("matrix_inventory --list: %d sites, %d hosts, %.1f MB of JSON" % (sites, hosts, len(out) / 1e6))
        print("  %d runs: best %s, median %s (target 50 ms): %s" % (
            args.runs, ms(best), ms(median), "within target" if median <= 0.050 else "OVER TARGET"))
        print("  per host: %.2f us; one site (19 hosts): median %s; %d CPUs" % (
            median / hosts * 1e6, ms(statistics.median(single)), os.cpu_count() or 1))

        if args.no_ansible:
            return
        ansible_inventory = os.path.join(ROOT, ".venv", "bin", "ansible-inventory")
        if not os.path.exists(ansible_inventory):
            sys.exit("%s is missing: run scripts/setup (or pass --no-ansible)" % ansible_inventory)
        static = os.path.join(tmp, "static.yml")
        with open(static, "w") as f:
            json.dump(static_inventory(doc), f)
        env = dict(os.environ, ANSIBLE_INVENTORY_ENABLED="yaml,script", MATRIX_HA_SITE=sites_dir)
        env.pop("ANSIBLE_CONFIG", None)
        static_t, _ = timed([ansible_inventory, "-i", static, "--list"], env=env)
        script_t, _ = timed([ansible_inventory, "-i", exe, "--list"], env=env)
        print("same inventory through Ansible (1 run each):")
        print("  ansible-inventory -i static.yml --list:       %s  (%.0fx matrix_inventory)" % (
            ms(static_t[0]), static_t[0] / median))
        print("  ansible-inventory -i matrix_inventory --list: %s  (%.0fx matrix_inventory)" % (
            ms(script_t[0]), script_t[0] / median))
        print("  matrix_inventory's share of the script-form run: %.1f%%" % (100 * median / script_t[0]))


if __name__ == "__main__":
    main()
