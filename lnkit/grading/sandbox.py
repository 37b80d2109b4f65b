"""How untrusted code is started: which user, which interpreter, which limits.

As root, the student's code (the kernel nbgrader executes, and the student server) runs as an unprivileged user
(``nobody`` by default), in a private folder of its own. That user must be able to run a Python interpreter that sees
this environment's packages: ``sys.executable`` when every folder above it is open to others; otherwise a system
Python of the same version (``/usr/bin/python3.X``) with this environment's site-packages added, since a virtual
environment often points into a home folder others cannot enter (pyenv in /root). When not root, or when no such
interpreter exists, isolation by user is off and :func:`isolation_warning` says so.
"""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import site
import stat
import sys
import tempfile
from dataclasses import dataclass


def open_to_others(path: str) -> bool:
    """Whether a user who is neither owner nor in the group can reach and run (or read) path."""
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    for i in range(2, len(parts)):
        d = os.sep.join(parts[:i]) or os.sep
        try:
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    try:
        return bool(os.stat(real).st_mode & stat.S_IROTH)
    except OSError:
        return False


def _same_version_pythons():
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    for folder in ("/usr/bin", "/usr/local/bin", "/bin"):
        yield os.path.join(folder, f"python{v}")


@dataclass(frozen=True)
class Sandbox:
    """Who runs untrusted code, and with which interpreter. ``user`` is None when isolation by user is off."""

    user: pwd.struct_passwd | None
    python: str
    site_dirs: tuple = ()  # added with site.addsitedir when python is not this environment's own
    reason: str = ""  # why isolation is off

    def python_module(self, module: str, *args: str) -> list[str]:
        """argv running ``python -I -m module args`` with this sandbox's interpreter and packages.

        The process first makes itself non-dumpable (prctl PR_SET_DUMPABLE 0): students graded at the same time run
        as the same user, and a dumpable process's memory (a kernel that ran hidden tests) could be read through
        /proc/PID/mem by any other process of that user.
        """
        boot = ("import ctypes, runpy, site, sys\n"
                "ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)\n"
                f"for d in {list(self.site_dirs)!r}: site.addsitedir(d)\n"
                "sys.argv = sys.argv[1:]\n"
                "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n")
        return [self.python, "-I", "-c", boot, module, *args]

    def private_dir(self, prefix: str) -> str:
        """A fresh folder only the sandbox's user (and root) can enter."""
        path = tempfile.mkdtemp(prefix=prefix)
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        return path

    def popen_kwargs(self) -> dict:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}


def sandbox(user: str = "nobody") -> Sandbox:
    if os.geteuid() != 0:
        return Sandbox(None, sys.executable, reason="grading is not running as root, so student code runs as "
                                                   f"{pwd.getpwuid(os.geteuid()).pw_name}, the grader's own user")
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"user: no user named {user!r} on this machine (set c.OutsideChecks.user)") from None
    if open_to_others(sys.executable):
        return Sandbox(account, sys.executable)
    packages = tuple(p for p in site.getsitepackages() if os.path.isdir(p) and open_to_others(p))
    for candidate in _same_version_pythons():
        if os.path.exists(candidate) and open_to_others(candidate) and packages:
            return Sandbox(account, candidate, packages)
    return Sandbox(None, sys.executable, reason=f"{sys.executable} is not reachable by user {user!r} and no "
                                                 f"python{sys.version_info.major}.{sys.version_info.minor} open to "
                                                 f"others was found")


def isolation_warning(box: Sandbox) -> str:
    if box.user is not None:
        return ""
    return (f"isolation by user is OFF: {box.reason}. Student code can read whatever that user can, hidden tests "
            f"and the gradebook included. Grade as root for isolation.")


def set_limits(memory_bytes: int, cpu_seconds: int) -> None:
    """rlimits for untrusted code (called in the child, after it dropped privileges)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def remove_tree(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)
