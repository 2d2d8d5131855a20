#!/usr/bin/env python3
"""Writes, for each host of the scenario, the variables the dynamic inventory gives it.

    site_vars.py INVENTORY SITE_FILE OVERRIDES OUT_DIR HOST...

Each scenario host is named `<prefix><short name>` (mh-site-patroni-1 is the inventory's
patroni-1). A host's file holds the variables of every inventory group it is in, then its own
host variables, then the scenario's overrides (OVERRIDES: a JSON object of `all` and per-group
objects), as JSON that converge.yml loads with include_vars. `ansible_host` is left out: the
docker connection needs the container's name there; the roles get the address as
`etcd_address`, `patroni_address` and `keepalived_unicast_src_ip` instead.
"""
import json
import subprocess
import sys


def main():
    inventory, site, overrides_file, out_dir, *hosts = sys.argv[1:]
    listing = json.loads(
        subprocess.run(
            [inventory, "--site", site, "--list"], check=True, capture_output=True, text=True
        ).stdout
    )
    with open(overrides_file, encoding="utf-8") as f:
        overrides = json.load(f)
    hostvars = listing["_meta"]["hostvars"]
    for host in hosts:
        short = host.split("-", 2)[-1]
        fqdn = next((h for h in hostvars if h.split(".")[0] == short), None)
        if fqdn is None:
            sys.exit(f"site_vars.py: the inventory has no host {short} (for {host})")
        groups = [
            name
            for name, body in listing.items()
            if name != "_meta" and fqdn in body.get("hosts", [])
        ]
        merged = {}
        roles = set()
        for name in [g for g, body in listing.items() if "vars" in body]:
            body = listing[name]
            if name in groups or any(c in groups for c in body.get("children", [])):
                merged.update(body["vars"])
        for name in groups:
            for prefix_group in ("etcd", "patroni", "haproxy", "keepalived", "synapse",
                                 "matrix_servers", "pgbouncer", "minio", "backup"):
                if name.endswith("_" + prefix_group):
                    roles.add(prefix_group)
        own = dict(hostvars[fqdn])
        address = own.pop("ansible_host")
        merged.update(own)
        if "patroni" in roles:
            merged["patroni_address"] = address
            merged["etcd_address"] = address
        merged.update(overrides.get("all", {}))
        for role in sorted(roles):
            merged.update(overrides.get(role, {}))
        with open(f"{out_dir}/{host}.json", "w", encoding="utf-8") as f:
            json.dump(merged, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
