"""The molecule `database` scenario as an operator lives it: how long a fresh converge of
playbooks/site.yml takes on six containers, how long a re-run that changes nothing takes (the
goal is 60 s or less), a check-mode pass, and the HA drill (side_effect.yml) repeated ROUNDS
times: seconds from killing the primary's container to the first acknowledged write, seconds for
the VIP to move when HAProxy stops on its holder, rows written, rows lost.

  .venv/bin/python bench/molecule_database.py [ROUNDS]     (after scripts/setup, as root)

The containers are removed at the end.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

import benchlib

ROOT = benchlib.ROOT


def molecule(step, env, *extra):
    start = time.perf_counter()
    out = subprocess.run(
        [os.path.join(benchlib.VENV_BIN, "molecule"), step, "-s", "database", *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        if step != "destroy":
            molecule("destroy", env)
        sys.exit(f"molecule {step} failed:\n{out.stdout[-6000:]}")
    return elapsed, out.stdout


def changed_hosts(text):
    """Hosts of the last PLAY RECAP with changed > 0."""
    recap = text[text.rfind("PLAY RECAP"):]
    return [m.group(1) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=([1-9]\d*)", recap, re.M)]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    benchlib.require_setup()
    image = subprocess.run([os.path.join(ROOT, "scripts", "build-image")], check=True,
                           capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="matrix-ha-secrets") as secrets:
        env = dict(os.environ)
        env.update(
            MATRIX_HA_TEST_IMAGE=image,
            MATRIX_HA_TEST_SECRETS=secrets,
            ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
            ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
            PATH=benchlib.VENV_BIN + os.pathsep + env.get("PATH", ""),
            NO_COLOR="1",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
        )
        try:
            molecule("destroy", env)
            create, _ = molecule("create", env)
            prepare, _ = molecule("prepare", env)
            converge, _ = molecule("converge", env)
            rerun, text = molecule("converge", env)
            if changed_hosts(text):
                sys.exit(f"the re-run changed {changed_hosts(text)}")
            check, text = molecule("converge", env, "--", "--check")
            if changed_hosts(text):
                sys.exit(f"check mode reported changes on {changed_hosts(text)}")
            drills = []
            for _ in range(rounds):
                _, text = molecule("side-effect", env)
                line = re.search(r'"msg": "HA drill: (.*)"', text).group(1)
                # Back to the converged state: the restarted container's /etc/hosts (Docker
                # rewrites it on start) is put back; then a run that changes nothing.
                molecule("converge", env)
                again, text = molecule("converge", env)
                if changed_hosts(text):
                    sys.exit(f"the re-run after the drill changed {changed_hosts(text)}")
                drills.append((line, again))
        finally:
            molecule("destroy", env)
    print(benchlib.machine())
    print(f"create {create:.1f} s, prepare {prepare:.1f} s, converge (fresh) {converge:.1f} s, "
          f"re-run (changed=0) {rerun:.1f} s, check mode (changed=0) {check:.1f} s")
    for i, (line, again) in enumerate(drills, 1):
        print(f"drill {i}: {line}; re-run after it {again:.1f} s")


if __name__ == "__main__":
    main()
