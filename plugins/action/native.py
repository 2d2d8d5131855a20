# Copyright: matrix-ha maintainers
# Apache License 2.0
"""Runs the collection's native (Rust) modules in one round trip per task.

Ansible never pipelines binary modules: every task makes a remote temporary directory, uploads
the binary and an args file, runs it and removes the directory, about five round trips. Over
SSH that makes a native module slower than a pipelined Python one.

This action plugin, which meta/runtime.yml assigns to every module of the collection, keeps each
module binary in a per-user cache directory on the target (mode 0700), named by the binary's
SHA-256, and runs it with the module arguments on standard input (`BINARY -`):

- cached: one round trip. A shell snippet checks the architecture; that no component of the
  cache directory's real path can be changed by another user (each is owned by root or the
  (become) user, and none is writable by group or others unless it is sticky, like /tmp); that
  the directory and the file belong to the user; then copies the file into a fresh private
  directory, verifies the copy's SHA-256 and runs that copy, so the file verified is the file
  executed. A stale or tampered file is never executed.
- not cached (first task on a host, new version, failed check): the binary is uploaded to a
  temporary directory, copied into the cache by the (become) user, its SHA-256 verified there,
  and run in the same command; older versions of that module are removed from the cache.

Arguments are built exactly as for the plain module (the same `_ansible_*` keys), and the
result goes through Ansible's own parsing, so results are the same as the plain module's.

The plain binary-module path is used instead, and said at -vvv, for: async tasks, connections
that cannot send input (no pipelining support), `su` and other become methods that cannot take
input, ANSIBLE_KEEP_REMOTE_FILES, `matrix_ha_fast_path: false`, and a become that needs a tty
(sudo `requiretty`), which is detected from the first failure. A target architecture other than
the one the binaries are built for fails with a clear message.

The cache directory is `~/.cache/z3r0d3v.matrix_ha` of the user the module runs as (root's for
`become: true`), or the variable `matrix_ha_remote_cache`. A cache directory another user could
change (a path component owned by someone else, or group- or world-writable without the sticky
bit) is refused with a warning, and the task runs on the plain path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.json import Direction, get_module_encoder
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash
from ansible.vars.clean import remove_internal_keys

display = Display()

# uname -m of the targets the binaries are built for.
SHIPPED_ARCHITECTURES = ("x86_64",)
DEFAULT_CACHE = "~/.cache/z3r0d3v.matrix_ha"
MISS = "MATRIX_HA_FAST_PATH_MISS"
ARCH = "MATRIX_HA_FAST_PATH_ARCH"
INSTALL_FAILED = "MATRIX_HA_FAST_PATH_INSTALL_FAILED"
UNSAFE = "MATRIX_HA_FAST_PATH_UNSAFE"
TTY_MARKERS = ("must have a tty", "no tty present", "a terminal is required")

# path -> (size, mtime_ns, sha256): the binaries do not change during a run.
_DIGESTS: dict[str, tuple[int, int, str]] = {}


class _Fallback(Exception):
    """The fast path cannot serve this task; the plain module path can."""


def _sha256(path):
    st = os.stat(path)
    cached = _DIGESTS.get(path)
    if cached and cached[:2] == (st.st_size, st.st_mtime_ns):
        return cached[2]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    _DIGESTS[path] = (st.st_size, st.st_mtime_ns, digest.hexdigest())
    return digest.hexdigest()


def _shell_path(path):
    """A path for sh, with a leading ~/ expanded by the remote shell and the rest quoted."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        fqcn = self._task.resolved_action or self._task.action
        host = self._play_context.remote_addr

        reason = self._fast_path_unavailable(task_vars)
        if reason is None:
            try:
                return merge_hash(result, self._run_fast(fqcn, task_vars))
            except _Fallback as why:
                reason = str(why)
        display.vvv(f"matrix_ha: running {fqcn} as a plain binary module: {reason}", host=host)
        return merge_hash(result, self._run_plain(fqcn, task_vars))

    def _fast_path_unavailable(self, task_vars):
        if not self._bool_var(task_vars, "matrix_ha_fast_path", True):
            return "matrix_ha_fast_path is false"
        if self._task.async_val:
            return "async task"
        if C.DEFAULT_KEEP_REMOTE_FILES:
            return "ANSIBLE_KEEP_REMOTE_FILES keeps the plain module's files"
        if not self._connection.has_pipelining:
            return f"the {self._connection.transport} connection cannot send input to a command"
        become = self._connection.become
        if become is not None and (become.name == "su" or not getattr(become, "pipelining", True)):
            return f"become method {become.name} cannot pass input to the command"
        return None

    def _bool_var(self, task_vars, name, default):
        value = task_vars.get(name, default)
        if isinstance(value, str):
            value = self._templar.template(value) if "{" in value else value
            return value.strip().lower() not in ("0", "false", "no", "off", "n", "f", "")
        return bool(value)

    def _run_plain(self, fqcn, task_vars):
        wrap_async = self._task.async_val and not self._connection.has_native_async
        data = self._execute_module(module_name=fqcn, task_vars=task_vars, wrap_async=wrap_async)
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return data

    def _run_fast(self, fqcn, task_vars):
        module_args = self._task.args.copy()
        self._update_module_args(fqcn, module_args, task_vars)
        module_bits, module_path = self._configure_module(
            module_name=fqcn, module_args=module_args, task_vars=task_vars
        )
        if module_bits.module_style != "binary":
            raise _Fallback(f"{module_path} is not a binary module")
        profile = module_bits.serialization_profile
        encoder = get_module_encoder(profile, Direction.CONTROLLER_TO_MODULE)
        payload = json.dumps(module_args, cls=encoder).encode()

        name = os.path.basename(module_path)
        digest = _sha256(module_path)
        cache = task_vars.get("matrix_ha_remote_cache") or DEFAULT_CACHE
        env = self._compute_environment_string()
        snippet = _Snippet(name, digest, _shell_path(cache), env)

        res = self._execute(snippet.run_cached(), payload)
        if self._marker(res, MISS) is not None:
            res = self._upload_and_run(module_path, snippet, payload)
        return self._parse(res, profile)

    def _execute(self, cmd, payload):
        res = self._low_level_execute_command(cmd, sudoable=True, in_data=payload)
        stderr = res.get("stderr", "")
        if res.get("rc") != 0 and any(m in stderr for m in TTY_MARKERS):
            raise _Fallback("the become method needs a tty: " + stderr.strip().splitlines()[0])
        unsafe = self._marker(res, UNSAFE)
        if unsafe is not None:
            display.warning(
                f"matrix_ha: the remote cache directory is not private: {unsafe} is owned by "
                "another user or writable by group or others (not sticky); running the module "
                "on the plain path instead"
            )
            raise _Fallback(f"unsafe cache directory component {unsafe}")
        arch = self._marker(res, ARCH)
        if arch is not None:
            raise AnsibleError(
                f"z3r0d3v.matrix_ha ships binaries for {', '.join(SHIPPED_ARCHITECTURES)}; "
                f"the target is {arch or 'of an unknown architecture'}"
            )
        return res

    @staticmethod
    def _marker(res, marker):
        """The text after `marker` when the command printed it, else None."""
        for line in res.get("stdout", "").splitlines():
            if line.startswith(marker):
                return line[len(marker):].strip()
        return None

    def _upload_and_run(self, module_path, snippet, payload):
        had_tmpdir = self._connection._shell.tmpdir is not None
        tmpdir = self._connection._shell.tmpdir or self._make_tmp_path()
        remote = self._connection._shell.join_path(tmpdir, snippet.file_name)
        try:
            self._transfer_file(module_path, remote)
            self._fixup_perms2([tmpdir, remote], self._get_remote_user(), execute=False)
            res = self._execute(snippet.install_and_run(remote), payload)
        finally:
            if not had_tmpdir:
                self._remove_tmp_path(tmpdir)
        failed = self._marker(res, INSTALL_FAILED)
        if failed is not None:
            raise AnsibleError(f"matrix_ha: could not install {snippet.file_name} in the remote cache: {failed}")
        return res

    def _parse(self, res, profile):
        # The same post-processing ActionBase._execute_module gives a module's output.
        data = self._parse_returned_data(res, profile)
        data.pop("_ansible_suppress_tmpdir_delete", None)
        remove_internal_keys(data)
        return data


class _Snippet:
    """The shell commands of the fast path (POSIX sh; coreutils' sha256sum and mktemp)."""
    # The cached case spawns a few processes besides the module (uname, id, find, mktemp, cp,
    # sha256sum, rm and the command substitutions' subshells): each costs about a millisecond
    # on every task, a price for verifying and executing the same file.

    def __init__(self, name, digest, cache_dir, env):
        self.name = name
        self.digest = digest
        self.file_name = f"{name}-{digest}"
        self.cache_dir = cache_dir
        self.env = env

    def _prologue(self):
        shipped = " ".join(SHIPPED_ARCHITECTURES)
        return (
            "umask 077; "
            f"d={self.cache_dir}; f=\"$d\"/{self.file_name}; a=$(uname -m); "
            f"case \" {shipped} \" in *\" $a \"*) ;; *) echo {ARCH} \"$a\"; exit 0;; esac; "
        )

    @staticmethod
    def _owned(path):
        # A regular file, not a link, owned by this user, in a directory of this user's.
        return f"[ -O \"$d\" ] && [ -f {path} ] && [ ! -L {path} ] && [ -O {path} ]"

    def _verified(self, path):
        # Owned as above, and the expected content.
        return (
            f"{self._owned(path)} && "
            f"h=$(sha256sum < {path}) && [ \"${{h%% *}}\" = {self.digest} ]"
        )

    @staticmethod
    def _private():
        # Every component of the directory's real path ($PWD after cd -P): owned by root or
        # this user, and not writable by group or others unless sticky (/tmp). One find for
        # all; it prints the first component that fails. The shell's directory is restored.
        return (
            "o=$PWD; cd -P \"$d\" || exit 1; set -- /; r=${PWD#/}; c=; "
            "while [ -n \"$r\" ]; do c=\"$c/${r%%/*}\"; set -- \"$@\" \"$c\"; "
            "case $r in */*) r=${r#*/};; *) r=;; esac; done; "
            "u=$(id -u); b=$(find \"$@\" -maxdepth 0 \\( \\( -perm /022 ! -perm -1000 \\) "
            "-o ! \\( -uid 0 -o -uid \"$u\" \\) \\) -print -quit); cd \"$o\"; "
            f"if [ -n \"$b\" ]; then echo {UNSAFE} \"$b\"; exit 0; fi; "
        )

    def _run_copy(self, on_mismatch):
        # Copy the cached file into a fresh private directory, verify the copy, run the copy:
        # the file whose SHA-256 was checked is the file executed.
        return (
            f"w=$(mktemp -d \"$d\"/.run.XXXXXX) && cp \"$f\" \"$w\"/{self.name} && "
            f"if {self._verified(chr(34) + '$w/' + self.name + chr(34))}; then "
            f"{self.env} \"$w\"/{self.name} -; r=$?; rm -rf \"$w\"; exit $r; fi; "
            f"rm -rf \"$w\"; {on_mismatch}"
        )

    def run_cached(self):
        return (
            self._prologue()
            + f"[ -d \"$d\" ] || {{ echo {MISS}; exit 0; }}; "
            + self._private()
            + f"if {self._owned(chr(34) + '$f' + chr(34))}; then "
            + self._run_copy(f"echo {MISS}; exit 0")
            + "; fi; "
            + f"echo {MISS}"
        )

    def install_and_run(self, uploaded):
        src = shlex.quote(uploaded)
        return (
            self._prologue()
            + "mkdir -p \"$d\" && chmod 700 \"$d\" || "
            + f"{{ echo {INSTALL_FAILED} \"cannot make $d\"; exit 1; }}; "
            + self._private()
            + f"t=$(mktemp \"$d\"/.{self.name}.XXXXXX) && cp {src} \"$t\" && chmod 700 \"$t\" && "
            + f"{self._verified(chr(34) + '$t' + chr(34))} && mv -f \"$t\" \"$f\" || "
            + f"{{ rm -f \"$t\"; echo {INSTALL_FAILED} \"$d is not this user's, or the copy did not verify\"; exit 1; }}; "
            + f"for o in \"$d\"/{self.name}-*; do [ \"$o\" = \"$f\" ] || rm -f \"$o\"; done; "
            + self._run_copy(f"echo {INSTALL_FAILED} \"the installed copy did not verify\"; exit 1")
        )
