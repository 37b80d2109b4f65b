"""Where untrusted code runs: one bubblewrap sandbox per student, denying everything it does not grant.

Every process that runs a student's code (the kernel nbgrader executes, and the student server whose answers the
checks score) is started through :meth:`Sandbox.argv`, which wraps the command in Debian's ``bwrap`` (bubblewrap,
Flatpak's sandbox). Inside there is:

- a filesystem made of nothing but the interpreter and its standard library (read-only), the packages the
  assignment allows (read-only, each bound by itself at ``/sandbox/site``), the files it is given (read-only, in the
  working folder ``/home/student``), a size-capped private ``/tmp``, and a fresh ``/dev`` and ``/proc``: no course
  folder, no home folders, no gradebook, no other student, no host ``/dev/shm``, no lnkit unless granted;
- its own PID, network, IPC and UTS namespaces: when the sandbox ends every process in it ends (a double-forked
  daemon included), it cannot see or signal any other process, and it has no network (not even loopback to the host);
- its own identity: as root, a uid of its own from a reserved range (``uid_base`` + a hash of the student), reached
  by ``setpriv`` with every capability dropped; not as root, a user namespace of the instructor's unprivileged user;
- limits: address space, CPU seconds, processes, file size, open files (``prlimit``), and an environment holding
  nothing of the grader's.

Where bubblewrap cannot make a sandbox (not installed, user namespaces disabled), :func:`unavailable` says why, and
grading refuses to run student code unless the instructor opted out explicitly (``allow_unsandboxed``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import importlib.util
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field

SITE = "/sandbox/site"  # where granted packages appear inside
HOME = "/home/student"  # the working folder inside: the student's files, read-only, and room to write

INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf install "
                "bubblewrap`) and make sure unprivileged user namespaces are enabled "
                "(`sysctl kernel.unprivileged_userns_clone=1`, and on Ubuntu 24.04 "
                "`sysctl kernel.apparmor_restrict_unprivileged_userns=0`)")


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use. CPU time, never wall-clock time, decides a grade (the machine may be busy)."""

    memory_bytes: int = 4 * 1024**3  # address space (torch alone maps about 1 GiB of it)
    cpu_seconds: int = 600  # per process in the sandbox: a backstop behind the per-call limits of the checker
    processes: int = 128  # processes and threads
    file_bytes: int = 64 * 1024**2  # largest file it may write
    open_files: int = 256
    tmp_bytes: int = 64 * 1024**2  # each of /tmp and the working folder (in memory)

    def __post_init__(self):
        for name, least in (("memory_bytes", 256 * 1024**2), ("cpu_seconds", 1), ("processes", 8),
                            ("file_bytes", 1024**2), ("open_files", 64), ("tmp_bytes", 1024**2)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"Limits.{name}: expected an int of at least {least}; got {value!r}")


def _run_quiet(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


@functools.lru_cache(maxsize=None)
def unavailable() -> str:
    """Why no sandbox can be made here ("" when one can): bubblewrap missing, or refused by the kernel."""
    for tool in ("bwrap", "prlimit", "setpriv"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed: {INSTALL_HINT}"
    probe = Sandbox(key="probe", packages=(), limits=Limits())
    try:
        done = _run_quiet(probe.argv([probe.python, "-I", "-S", "-c", "print('sandbox ok')"]))
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap could not start ({e}): {INSTALL_HINT}"
    if done.returncode != 0 or "sandbox ok" not in done.stdout:
        return f"bubblewrap failed ({(done.stderr or done.stdout).strip()[:300]}): {INSTALL_HINT}"
    return ""


# --- what the sandbox may import ----------------------------------------------------------------------------------


def _site_dirs() -> list[str]:
    """This environment's site folders, as sys.path lists them (not the current folder: a clone's lnkit.egg-info
    is no distribution)."""
    paths = sysconfig.get_paths()
    found = {paths["purelib"], paths["platlib"]}
    found.update(p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages")))
    return sorted(p for p in found if os.path.isdir(p))


@functools.lru_cache(maxsize=None)
def _distributions() -> dict[str, md.Distribution]:
    found = {}
    for dist in md.distributions(path=_site_dirs()):
        found.setdefault(re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower(), dist)
    return found


def _distribution_names(import_name: str) -> list[str]:
    """The distributions of the site folders that install import_name."""
    names = []
    for key, dist in _distributions().items():
        tops = {f.parts[0].removesuffix(".py") for f in dist.files or [] if f.parts}
        if import_name in tops:
            names.append(key)
    return names


def _requirements(dist: md.Distribution) -> list[str]:
    """The names of the distributions dist needs (extras and other platforms left out)."""
    from packaging.requirements import Requirement

    names = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


def _top_level_paths(dist: md.Distribution) -> list[str]:
    """The entries of a site folder that belong to dist: its packages, modules, bundled libraries, metadata."""
    root = str(dist.locate_file(""))
    tops = set()
    for f in dist.files or []:
        parts = f.parts
        if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith(".pth"):
            continue
        if parts[0].startswith("__editable__"):
            continue
        tops.add(parts[0])
    return [os.path.join(root, t) for t in sorted(tops) if os.path.exists(os.path.join(root, t))]


@functools.lru_cache(maxsize=None)
def package_binds(import_names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(host path, path inside) for the packages import_names name and everything they need, recursively.

    An import name that no installed distribution provides, but that is importable (an editable install such as
    lnkit in a clone), is bound from where it is found.
    """
    binds: dict[str, str] = {}
    seen: set[str] = set()
    todo: list[str] = []
    for name in import_names:
        dists = _distribution_names(name)
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ValueError(f"packages: {name!r} is not importable in this environment")
        location = (list(spec.submodule_search_locations or []) or [spec.origin])[0]
        binds[os.path.realpath(location)] = f"{SITE}/{os.path.basename(location)}"
        todo.extend(dists)
    while todo:
        dname = todo.pop()
        key = re.sub(r"[-_.]+", "-", dname).lower()
        if key in seen:
            continue
        seen.add(key)
        dist = _distributions().get(key)
        if dist is None:
            continue
        for path in _top_level_paths(dist):
            binds.setdefault(os.path.realpath(path), f"{SITE}/{os.path.basename(path)}")
        todo.extend(_requirements(dist))
    return tuple(sorted(binds.items(), key=lambda kv: kv[1]))


def _hidden_site_dirs(prefix: str) -> list[str]:
    """Site folders of the interpreter's own installation and of the system: masked inside the sandbox."""
    candidates = {sysconfig.get_paths(vars={"base": prefix, "platbase": prefix})["purelib"],
                  sysconfig.get_paths(vars={"base": prefix, "platbase": prefix})["platlib"],
                  "/usr/lib/python3/dist-packages", "/usr/local/lib/python3/dist-packages",
                  f"/usr/local/lib/python{sys.version_info.major}.{sys.version_info.minor}/dist-packages",
                  f"/usr/local/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"}
    return sorted(p for p in candidates if os.path.isdir(p))


# --- the sandbox ----------------------------------------------------------------------------------------------------


def sandbox_uid(key: str, base: int) -> int:
    """A uid of the reserved range for this student: distinct students get distinct uids (but for rare collisions,
    which only make two sandboxes share a uid; each still sees nothing of the other)."""
    return base + int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") % 1_000_000


def _count_tasks(uid: int) -> int:
    """Threads and processes of uid now (RLIMIT_NPROC counts them all, per real uid)."""
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                n += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    return n


@dataclass
class Sandbox:
    """One student's sandbox. ``argv(cmd)`` is the command line that runs cmd inside it."""

    key: str  # who: "student/assignment"; as root it picks the uid
    packages: tuple[str, ...] = ("numpy",)
    limits: Limits = field(default_factory=Limits)
    files: tuple[tuple[str, str], ...] = ()  # (host file, path relative to the working folder), bound read-only
    read_only: tuple[tuple[str, str], ...] = ()  # (host path, path inside), e.g. the student server's code
    shared_dirs: tuple[str, ...] = ()  # host folders bound read-write at the same path (the kernel's sockets)
    env: dict = field(default_factory=dict)
    uid_base: int = 2_100_000_000

    @property
    def python(self) -> str:
        """The interpreter, as a path valid inside (the base installation's, not a venv's launcher)."""
        return os.path.realpath(sys.executable)

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def uid(self) -> int:
        return sandbox_uid(self.key, self.uid_base) if self.as_root else os.geteuid()

    def identity(self) -> str:
        if self.as_root:
            return f"uid {self.uid} of its own (from the reserved range at {self.uid_base})"
        return f"a user namespace of {os.geteuid()} (the grader's own user, without access to its files)"

    def _mounts(self) -> list[str]:
        args = ["--ro-bind", "/usr", "/usr"]
        for link in ("bin", "lib", "lib64", "sbin"):
            target = os.readlink(f"/{link}") if os.path.islink(f"/{link}") else None
            if target:
                args += ["--symlink", target, f"/{link}"]
            elif os.path.isdir(f"/{link}"):
                args += ["--ro-bind", f"/{link}", f"/{link}"]
        if os.path.exists("/etc/ld.so.cache"):
            args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        # the private /tmp first: an interpreter or a package that lives under the host's /tmp (a clone there) is
        # bound on top of it below, instead of being hidden by it
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(self.limits.tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
        made = {"/", "/usr", "/etc", "/tmp"}

        def dirs_for(path: str) -> list[str]:
            out = []
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/" + "/".join(parts[:i])
                if d not in made and not d.startswith("/usr/"):
                    made.add(d)
                    out += ["--perms", "0755", "--dir", d]
            return out

        prefix = sys.base_prefix
        if not prefix.startswith("/usr"):
            args += dirs_for(prefix + "/x") + ["--ro-bind", prefix, prefix]
        for hidden in _hidden_site_dirs(prefix):
            args += ["--tmpfs", hidden]
        for host, inside in package_binds(tuple(self.packages)):
            args += dirs_for(inside) + ["--ro-bind", host, inside]
        for host, inside in self.read_only:
            args += dirs_for(inside) + ["--ro-bind", host, inside]
        args += dirs_for(HOME + "/x") + ["--size", str(self.limits.tmp_bytes), "--perms", "0777", "--tmpfs", HOME]
        for host, rel in self.files:
            inside = os.path.normpath(os.path.join(HOME, rel))
            if not inside.startswith(HOME + "/"):
                raise ValueError(f"files: {rel!r} leaves the working folder")
            args += dirs_for(inside) + ["--ro-bind", host, inside]
        for d in self.shared_dirs:
            args += dirs_for(d + "/x") + ["--bind", d, d]
        # nothing but the mounts above is writable: not the sandbox's root, not its /dev (an unbounded tmpfs)
        args += ["--remount-ro", "/dev", "--remount-ro", "/"]
        return args

    def environment(self) -> dict:
        env = {"HOME": HOME, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
               "PYTHONDONTWRITEBYTECODE": "1", "MPLCONFIGDIR": "/tmp/.matplotlib", "MPLBACKEND": "agg"}
        env.update(self.env)
        return env

    def argv(self, cmd: list[str]) -> list[str]:
        """prlimit (limits) -> bwrap (namespaces, filesystem, environment) -> [setpriv (own uid, as root)] -> cmd."""
        lim = self.limits
        nproc = lim.processes if self.as_root else _count_tasks(os.geteuid()) + lim.processes
        out = [shutil.which("prlimit") or "prlimit", f"--as={lim.memory_bytes}", f"--cpu={lim.cpu_seconds}",
               f"--nproc={nproc}", f"--fsize={lim.file_bytes}", f"--nofile={lim.open_files}", "--core=0", "--",
               shutil.which("bwrap") or "bwrap"]
        if self.as_root:
            out += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        else:
            out += ["--unshare-all", "--cap-drop", "ALL"]
        out += ["--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv"]
        for k, v in self.environment().items():
            out += ["--setenv", k, v]
        out += self._mounts() + ["--chdir", HOME, "--"]
        if self.as_root:
            out += [shutil.which("setpriv") or "setpriv", f"--reuid={self.uid}", f"--regid={self.uid}",
                    "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"]
        return out + list(cmd)

    def python_argv(self, boot: str, *args: str) -> list[str]:
        """``python -I -S -c boot args`` inside: no site folders but the granted packages at /sandbox/site."""
        return self.argv([self.python, "-I", "-S", "-c",
                          f"import sys; sys.path.append({SITE!r})\n" + boot, *args])


def regular_files(folder: str, *, skip=("*.ipynb",), max_files: int = 200, max_bytes: int = 64 * 1024**2
                  ) -> tuple[list[tuple[str, str]], list[str]]:
    """The regular files under folder as (path, relative path), never following a link; and what was left out, why.

    Symlinks, FIFOs, sockets and devices are never opened; files past the count or size caps are left out.
    """
    import fnmatch

    kept, refused, total = [], [], 0
    for root, dirs, names in os.walk(folder, followlinks=False):
        for d in list(dirs):
            if os.path.islink(os.path.join(root, d)):
                refused.append(f"{os.path.relpath(os.path.join(root, d), folder)}: a symbolic link")
                dirs.remove(d)
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if any(fnmatch.fnmatch(name, pattern) for pattern in skip):
                continue
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                refused.append(f"{rel}: not a regular file")
            elif len(kept) >= max_files:
                refused.append(f"{rel}: more than {max_files} files")
            elif total + st.st_size > max_bytes:
                refused.append(f"{rel}: over the {max_bytes // 1024**2} MiB the files may take together")
            else:
                kept.append((path, rel))
                total += st.st_size
    return kept, refused


def private_dir(prefix: str, owner: int | None = None) -> str:
    """A fresh folder only its owner (and root) can enter; owner is the sandbox's uid when grading as root."""
    path = tempfile.mkdtemp(prefix=prefix)
    if owner is not None and os.geteuid() == 0:
        os.chown(path, owner, owner)
    return path


def kill_tree(pid: int) -> None:
    """Kill a sandbox: bwrap and, through --die-with-parent and the PID namespace, everything inside it."""
    for p in [pid, *descendants(pid)]:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time used by pid and every process under it (alive, or dead and waited for): user + system."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
        except (OSError, IndexError, ValueError):
            continue
    return total / _TICKS


def remove_tree(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)
