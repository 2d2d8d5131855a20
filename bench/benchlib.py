"""Helpers shared by the benchmarks: running playbooks against this checkout, timing them,
describing the machine, and a throwaway sshd on 127.0.0.1."""

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def require_setup():
    if not os.path.exists(os.path.join(VENV_BIN, "ansible-playbook")):
        sys.exit("run scripts/setup first")
    subprocess.run([os.path.join(ROOT, "scripts", "build")], check=True)


def play(tasks, hosts="localhost"):
    """One play as JSON text (JSON is YAML)."""
    return json.dumps([{"name": "bench", "hosts": hosts, "gather_facts": False, "tasks": tasks}])


def ansible_env(work):
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
        ANSIBLE_HOME=os.path.join(work, "ansible-home"),
        ANSIBLE_REMOTE_TEMP=os.path.join(work, "remote-tmp"),
        ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.join(work, "cp"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_NOCOLOR="1",
    )
    return env


def run_playbook(path, env, extra=()):
    """Seconds one ansible-playbook run took; exits when it fails."""
    start = time.perf_counter()
    out = subprocess.run(
        [os.path.join(VENV_BIN, "ansible-playbook"), path, *extra],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"playbook {path} failed:\n{out.stdout}\n{out.stderr}")
    return elapsed


def per_task_ms(seconds, base, tasks):
    """Median play time minus the empty play's, per task, in ms."""
    return (statistics.median(seconds) - base) * 1000 / tasks


def peak_rss_kib(argv):
    """Max RSS of one process, from GNU time (a small parent: a child forked from this Python
    process would carry this process's pages in its count until it execs)."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"{argv[0]} exited {out.returncode}: {out.stderr}")
    return int(out.stderr.strip().splitlines()[-1])


def _first_line_value(path, prefix, sep):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(sep, 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def machine(ansible=True):
    """One line about this machine; with ansible-core's version unless `ansible` is false."""
    cpu = _first_line_value("/proc/cpuinfo", "model name", ":") or platform.processor() or "unknown CPU"
    system = _first_line_value("/etc/os-release", "PRETTY_NAME=", "=") or platform.system()
    line = f"{cpu}, {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, {system}"
    if not ansible:
        return line
    out = subprocess.run([os.path.join(VENV_BIN, "ansible"), "--version"], capture_output=True, text=True)
    first = out.stdout.splitlines()[0] if out.stdout else ""
    core = first.split("core ")[-1].rstrip("]") if "core " in first else "unknown"
    return f"{line}; ansible-core {core}"


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """sshd on 127.0.0.1 with host and client keys made for this run; root login by key."""

    def __init__(self, work):
        self.dir = os.path.join(work, "sshd")
        os.makedirs(self.dir)
        for key in ("host_ed25519", "client_ed25519"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "matrix-ha-bench",
                 "-f", os.path.join(self.dir, key)],
                check=True,
            )
        shutil.copy(os.path.join(self.dir, "client_ed25519.pub"), os.path.join(self.dir, "authorized_keys"))
        os.makedirs("/run/sshd", exist_ok=True)
        self.port = free_port()
        config = os.path.join(self.dir, "sshd_config")
        with open(config, "w") as f:
            f.write(
                f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.dir}/host_ed25519\n"
                f"PidFile {self.dir}/sshd.pid\nAuthorizedKeysFile {self.dir}/authorized_keys\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                "Subsystem sftp internal-sftp\nLogLevel ERROR\n"
            )
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):  # bounded: 5 s
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        sys.exit("sshd did not start (it needs root)")

    def inventory(self, path):
        with open(path, "w") as f:
            f.write(
                f"target ansible_host=127.0.0.1 ansible_port={self.port} ansible_user=root "
                f"ansible_connection=ssh ansible_ssh_private_key_file={self.dir}/client_ed25519 "
                "ansible_python_interpreter=/usr/bin/python3 "
                "ansible_ssh_common_args='-o StrictHostKeyChecking=no "
                "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'\n"
            )
        return path

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def stop_ssh_masters(env):
    """Ends the ControlPersist masters the runs left behind."""
    cp = env["ANSIBLE_SSH_CONTROL_PATH_DIR"]
    for name in os.listdir(cp) if os.path.isdir(cp) else []:
        subprocess.run(["ssh", "-o", f"ControlPath={os.path.join(cp, name)}", "-O", "exit", "bench"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def scratch():
    return tempfile.mkdtemp(prefix="matrix-ha-bench-")
