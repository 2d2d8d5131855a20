# Copyright: matrix-ha maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
name: scale
short_description: A matrix-ha site file as an inventory source
description:
  - Reads a matrix-ha site file (a YAML file named C(*.matrix_ha.yml) or C(*.matrix_ha.yaml)
    whose C(plugin) key is C(z3r0d3v.matrix_ha.scale)) and returns the whole inventory of that customer's
    highly available Matrix/Synapse deployment - host groups, server sizes, the IP plan, the
    variables of the collection's roles and matrix-docker-ansible-deploy's variables for the
    Synapse host.
  - The planning is done by the collection's C(matrix_inventory) binary; this plugin runs it with
    C(--site <file> --list) and loads its output. The binary is looked up in this order - the
    environment variable E(MATRIX_HA_INVENTORY_BIN), C(bin/matrix_inventory) inside the collection,
    C(matrix_inventory) on E(PATH).
  - The binary validates the file; every error names the option, host or address at fault.
    The full reference of the site file is the inventory README of the collection.
author: matrix-ha maintainers
options:
  plugin:
    description: Marks the file as a source for this plugin.
    required: true
    choices: ['z3r0d3v.matrix_ha.scale']
  domain:
    description: The Matrix domain (C(matrix_domain)), e.g. C(chat.z3r0d3v.com).
    required: true
    type: str
  scale:
    description: The design's scale. Leave it out to pick it from O(expected_ccu).
    type: str
    choices: [small, medium, large]
  expected_ccu:
    description: Expected concurrent users; picks the smallest scale that serves them.
    type: int
  network:
    description: The customer's private IPv4 range in CIDR form, e.g. C(10.20.0.0/24).
    required: true
    type: str
  vip:
    description: The HAProxy/keepalived virtual IP, inside O(network).
    required: true
    type: str
  gateway:
    description: The default gateway; defaults to the first usable address of O(network).
    type: str
  hosts:
    description: Addresses the customer already has, short host name to address.
    type: dict
  name:
    description: The site's group name; defaults to the domain with C(.) and C(-) as C(_).
    type: str
  name_pattern:
    description: Host naming pattern with C({role}) and C({index}).
    type: str
    default: "{role}-{index}"
  ip_plan:
    description: Address layout - C(block_size) (addresses per role block) and C(offsets) (role to block offset).
    type: dict
  roles:
    description: Per-role overrides of C(count), C(vcpu), C(ram_gb), C(disk_gb), C(bandwidth_gbps).
    type: dict
  workers:
    description: Overrides of the design's Synapse worker counts - C(sync), C(generic), C(federation_sender), C(event_persister).
    type: dict
  federation:
    description: Whether Matrix federation is enabled.
    type: bool
    default: true
  media_bucket:
    description: The MinIO bucket Synapse stores media in.
    type: str
    default: synapse-media
  keepalived_vrid:
    description: VRRP virtual router id (1-255); defaults to the last octet of the VIP.
    type: int
  vip_names:
    description: More names the intranet /etc/hosts maps to the VIP.
    type: list
    elements: str
"""

EXAMPLES = r"""
# chat.z3r0d3v.com.matrix_ha.yml - then: ansible-inventory -i chat.z3r0d3v.com.matrix_ha.yml --graph
plugin: z3r0d3v.matrix_ha.scale
domain: chat.z3r0d3v.com
scale: large
network: 10.20.0.0/24
vip: 10.20.0.10
hosts:
  patroni-1: 10.20.0.31
"""

import json
import os
import shutil
import subprocess

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin

BINARY = "matrix_inventory"
BINARY_ENV = "MATRIX_HA_INVENTORY_BIN"
SUFFIXES = (".matrix_ha.yml", ".matrix_ha.yaml")


def find_binary():
    """Returns the path of matrix_inventory, or raises AnsibleParserError naming every place tried."""
    tried = []
    from_env = os.environ.get(BINARY_ENV)
    if from_env:
        if os.path.isfile(from_env) and os.access(from_env, os.X_OK):
            return from_env
        raise AnsibleParserError(
            "%s is set to %r, which is not an executable file" % (BINARY_ENV, from_env)
        )
    tried.append("$%s (not set)" % BINARY_ENV)

    collection_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    bundled = os.path.join(collection_root, "bin", BINARY)
    if os.path.isfile(bundled) and os.access(bundled, os.X_OK):
        return bundled
    tried.append(bundled)

    on_path = shutil.which(BINARY)
    if on_path:
        return on_path
    tried.append("%s on PATH" % BINARY)

    raise AnsibleParserError(
        "z3r0d3v.matrix_ha.scale cannot find the %s binary; looked for: %s. "
        "Build the collection (scripts/build) or point %s at the binary."
        % (BINARY, "; ".join(tried), BINARY_ENV)
    )


class InventoryModule(BaseInventoryPlugin):
    NAME = "z3r0d3v.matrix_ha.scale"

    # The binary only emits values it computed from the operator's own site file, plus
    # "{{ vault_... }}" references that must be templated later.
    trusted_by_default = True

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(SUFFIXES)

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        binary = find_binary()
        try:
            proc = subprocess.run(
                [binary, "--site", path, "--list"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
            )
        except OSError as e:
            raise AnsibleParserError("cannot run %s: %s" % (binary, to_native(e))) from e
        if proc.returncode != 0:
            raise AnsibleParserError(to_native(proc.stderr).strip() or "%s failed" % binary)
        try:
            data = json.loads(proc.stdout)
        except ValueError as e:
            raise AnsibleParserError("%s printed no valid JSON: %s" % (binary, to_native(e))) from e
        self._populate(data)

    def _populate(self, data):
        groups = {name: body for name, body in data.items() if name not in ("_meta", "all")}
        for name in groups:
            self.inventory.add_group(name)
        for name, body in groups.items():
            for host in body.get("hosts", []):
                self.inventory.add_host(host, group=name)
            for key, value in body.get("vars", {}).items():
                self.inventory.set_variable(name, key, value)
        for name, body in groups.items():
            for child in body.get("children", []):
                self.inventory.add_child(name, child)
        for host, variables in data.get("_meta", {}).get("hostvars", {}).items():
            self.inventory.add_host(host)
            for key, value in variables.items():
                self.inventory.set_variable(host, key, value)
