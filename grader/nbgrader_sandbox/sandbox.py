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
- its own identity: as root, a uid of its own from a reserved range (``uid_base`` + a hash of the submission's
  folder), reached by ``setpriv`` with every capability dropped; not as root, a user namespace of the instructor's
  unprivileged user;
- limits for all its processes together (memory, processes and threads), from outside it (:class:`Containment`: a
  cgroup of its own, else a watcher), and for each process alone as a backstop: address space, CPU seconds,
  processes, file size, open files (``prlimit``); and an environment holding nothing of the grader's.

Where bubblewrap cannot make a sandbox (not installed, user namespaces disabled), :func:`unavailable` says why, and
grading refuses to run student code unless the instructor opted out explicitly (``allow_unsandboxed``).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.metadata as md
import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field

from . import landlock, supervisor
from .limits import CPU_SECONDS, MEMORY_BYTES, SERVER_PROCESSES, UID_BASE

SITE = "/sandbox/site"  # where granted packages appear inside
HOME = "/home/student"  # the working folder inside: the student's files, read-only, and room to write
WRITABLE = ("/tmp", HOME)  # the only places a sandboxed process writes to (tmpfs, size-capped)

INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf install "
                "bubblewrap`) and make sure unprivileged user namespaces are enabled "
                "(`sysctl kernel.unprivileged_userns_clone=1`, and on Ubuntu 24.04 "
                "`sysctl kernel.apparmor_restrict_unprivileged_userns=0`)")


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use. CPU time, never wall-clock time, decides a grade (the machine may be busy)."""

    memory_bytes: int = MEMORY_BYTES  # all its processes together (see Containment); each one's address space
    cpu_seconds: int = CPU_SECONDS  # per process in the sandbox: a backstop behind the checker's limits
    # processes and threads together, bubblewrap's two included (the kernel's: GradingSandbox.processes)
    processes: int = SERVER_PROCESSES
    file_bytes: int = 64 * 1024**2  # largest file it may write
    open_files: int = 256
    tmp_bytes: int = 64 * 1024**2  # each of /tmp and the working folder (in memory)

    def __post_init__(self):
        for name, least in (("memory_bytes", 256 * 1024**2), ("cpu_seconds", 1), ("processes", 8),
                            ("file_bytes", 1024**2), ("open_files", 64), ("tmp_bytes", 1024**2)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"Limits.{name}: expected an int of at least {least}; got {value!r}")


# --- what bounds a sandbox as a whole ---------------------------------------------------------------------------

SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervisor.py")


@dataclass(frozen=True)
class Containment:
    """How a sandbox's processes are bounded together (memory, processes and threads), from outside it.

    ``prlimit`` bounds each process alone (three forked children could hold three times the memory): every sandbox
    runs under :mod:`.supervisor`, which bounds the sum, by the first of these that works here (:func:`containment`):

    - ``cgroup v1``: a child cgroup of the grader's own in the memory and the pids hierarchies (as root);
    - ``cgroup v2``: a child of the grader's own cgroup v2, where it may make one with both controllers (as root
      where the grader's cgroup is the root of its hierarchy, as in most containers);
    - ``cgroup v2 scope``: a scope of the user's systemd (``systemd-run --user --scope``), where cgroups are
      delegated to users (most current distributions, for an ordinary user);
    - ``watcher``: none of these (an ordinary user on a cgroup v1 machine): the supervisor adds up the memory of
      the sandbox's processes every 50 ms and stops it whole past the limit.
    """

    kind: str
    parents: tuple[str, ...] = ()  # cgroup folders: each sandbox's cgroup is made under them

    KINDS = ("cgroup v1", "cgroup v2", "cgroup v2 scope", "watcher")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise ValueError(f"Containment.kind: expected one of {', '.join(self.KINDS)}; got {self.kind!r}")
        if self.kind != "watcher" and not self.parents:
            raise ValueError(f"Containment.parents: a {self.kind} needs the cgroup folder(s) to make it under")

    def describe(self) -> str:
        return {"cgroup v1": "a cgroup v1 of its own (memory and pids)",
                "cgroup v2": "a cgroup v2 of its own (memory and pids)",
                "cgroup v2 scope": "a systemd scope of its own (cgroup v2: memory and pids)",
                "watcher": "a watcher outside it (their memory added up every 50 ms)"}[self.kind]

    def argv(self, limits: Limits) -> list[str]:
        """The command line that runs a command (appended) under this containment's supervisor."""
        kind = {"cgroup v1": "cgroup", "cgroup v2": "cgroup", "cgroup v2 scope": "scope"}.get(self.kind, "watcher")
        out = [os.path.realpath(sys.executable), "-I", "-S", SUPERVISOR, kind, str(limits.memory_bytes),
               str(limits.processes), *self.parents, "--"]
        if self.kind == "cgroup v2 scope":
            out = [shutil.which("systemd-run") or "systemd-run", "--user", "--scope", "--quiet", "--collect",
                   f"-pMemoryMax={limits.memory_bytes}", "-pMemorySwapMax=0", f"-pTasksMax={limits.processes}",
                   "--", *out]
        return out


WATCHER = Containment("watcher")


def _cgroup_mounts() -> dict[str, tuple[str, str]]:
    """{"memory": (mount point, root), "pids": ..., "v2": ...} of the cgroup file systems mounted here."""
    found = {}
    try:
        lines = open("/proc/self/mountinfo").read().splitlines()
    except OSError:
        return found
    for line in lines:
        head, _, tail = line.partition(" - ")
        fields, fstype = head.split(), tail.split()
        if len(fields) < 5 or len(fstype) < 3:
            continue
        if fstype[0] == "cgroup2":
            found.setdefault("v2", (fields[4], fields[3]))
        elif fstype[0] == "cgroup":
            for option in fstype[2].split(","):
                if option in ("memory", "pids"):
                    found.setdefault(option, (fields[4], fields[3]))
    return found


def _own_cgroups() -> dict[str, str]:
    """{"memory": path, "pids": path, "v2": path} of this process, from /proc/self/cgroup."""
    own = {}
    for line in open("/proc/self/cgroup").read().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            own["v2"] = path
        for c in controllers.split(","):
            if c in ("memory", "pids"):
                own[c] = path
    return own


def _folder(mount: tuple[str, str], path: str) -> str | None:
    point, root = mount
    if not (path + "/").startswith(root.rstrip("/") + "/"):
        return None
    return os.path.join(point, path[len(root.rstrip("/")):].lstrip("/")).rstrip("/") or "/"


def _can_make_cgroups(parents: list[str], wanted: tuple[str, ...]) -> bool:
    """Whether a child cgroup with the wanted limit files can be made (and removed) under each parent."""
    for parent in parents:
        if not os.access(parent, os.W_OK):
            return False
        probe = os.path.join(parent, f"sandbox-probe-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.mkdir(probe)
        except OSError:
            return False
        try:
            if not any(os.path.exists(os.path.join(probe, f)) for f in wanted):
                return False
        finally:
            try:
                os.rmdir(probe)
            except OSError:
                pass
    return True


# What a parent process found out (machine_facts), adopted by a child instead of probing again (adopt_machine_facts)
_adopted: dict | None = None


def machine_facts() -> dict:
    """This process's findings about the machine, for a child process of the same user to adopt instead of probing
    again (the checker is a process per notebook, and the probe is a sandbox run): JSON-ready."""
    bound = containment()
    return {"unavailable": unavailable(), "containment": [bound.kind, list(bound.parents)]}


def adopt_machine_facts(facts: dict) -> None:
    """Take a parent's machine_facts() as this process's own (before the first sandbox)."""
    global _adopted
    kind, parents = facts["containment"]
    _adopted = {"unavailable": str(facts["unavailable"]), "containment": Containment(kind, tuple(parents))}
    unavailable.cache_clear()
    containment.cache_clear()


@functools.cache
def containment() -> Containment:
    """The strongest containment this machine and user allow (see :class:`Containment`)."""
    if _adopted is not None:
        return _adopted["containment"]
    try:
        mounts, own = _cgroup_mounts(), _own_cgroups()
    except (OSError, ValueError):
        return WATCHER
    if "memory" in mounts and "pids" in mounts and "memory" in own and "pids" in own:
        parents = [_folder(mounts["memory"], own["memory"]), _folder(mounts["pids"], own["pids"])]
        if None not in parents and _can_make_cgroups(parents[:1], ("memory.limit_in_bytes",)) \
                and _can_make_cgroups(parents[1:], ("pids.max",)):
            return Containment("cgroup v1", tuple(parents))
    if "v2" in mounts and "v2" in own:
        parent = _folder(mounts["v2"], own["v2"])
        try:
            enabled = open(os.path.join(parent or "/nonexistent", "cgroup.subtree_control")).read().split()
        except OSError:
            enabled = []
        if parent and {"memory", "pids"} <= set(enabled) and _can_make_cgroups([parent], ("memory.max",)):
            return Containment("cgroup v2", (parent,))
        if shutil.which("systemd-run") and os.geteuid() != 0:
            scope = Containment("cgroup v2 scope", (mounts["v2"][0],))
            try:
                done = _run_quiet(scope.argv(Limits()) + ["/bin/true"], timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                done = None
            if done is not None and done.returncode == 0:
                return scope
    return WATCHER


def _run_quiet(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


@functools.cache
def unavailable() -> str:
    """Why no sandbox can be made here ("" when one can): bubblewrap missing, or refused by the kernel."""
    if _adopted is not None:
        return _adopted["unavailable"]
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


# Each checker is a process of its own per notebook, and starts by finding the granted packages' files: these read
# only what they must (a distribution found by its folder's name; each one's RECORD as CSV). Reading every
# distribution's METADATA, and making a path object of each of the environment's tens of thousands of files through
# ``dist.files``, took 0.6 s of every checker's start.
@functools.cache
def _all_distributions() -> tuple[md.Distribution, ...]:
    return tuple(md.distributions(path=_site_dirs()))


@functools.cache
def _distribution(key: str) -> md.Distribution | None:
    """The distribution of that name the site folders hold first, as ``import`` would find it."""
    return next(iter(md.distributions(path=_site_dirs(), name=key)), None)


@functools.cache
def _first_parts(dist: md.Distribution) -> frozenset[str]:
    """The first part of every path a distribution installs, relative to its site folder."""
    record = dist.read_text("RECORD")
    if record is None:  # an egg-info install: its own file list
        return frozenset(f.parts[0] for f in dist.files or [] if f.parts)
    return frozenset(row[0].split("/", 1)[0] for row in csv.reader(record.splitlines()) if row and row[0])


@functools.cache
def _top_names(dist: md.Distribution) -> frozenset[str]:
    """The import names a distribution provides (and more): its paths' first parts, ``.py`` cut."""
    return frozenset(part.removesuffix(".py") for part in _first_parts(dist))


def _distribution_names(import_name: str) -> list[str]:
    """The distributions of the site folders that install import_name."""
    from packaging.utils import canonicalize_name

    return list(dict.fromkeys(canonicalize_name(dist.metadata["Name"] or "") for dist in _all_distributions()
                              if import_name in _top_names(dist)))


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
    tops = {part for part in _first_parts(dist) if part not in ("..", "__pycache__")
            and not part.endswith(".pth") and not part.startswith("__editable__")}
    return [os.path.join(root, t) for t in sorted(tops) if os.path.exists(os.path.join(root, t))]


@functools.cache
def package_binds(import_names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(host path, path inside) for the packages import_names name and everything they need, recursively.

    An import name that no installed distribution provides, but that is importable (an editable install such as
    lnkit in a clone), is bound from where it is found.
    """
    from packaging.utils import canonicalize_name

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
        key = canonicalize_name(dname)
        if key in seen:
            continue
        seen.add(key)
        dist = _distribution(key)
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


def submission_key(folder: str) -> str:
    """The key of the sandboxes that grade the submission in ``folder`` (nbgrader's
    ``autograded/<student>/<assignment>``): its real path. As root it picks the sandbox's uid, so one student has a uid
    per course folder: two courses (or two sections, or two copies of one) graded at once on one machine give their
    students different uids (but for the rare collisions of :func:`sandbox_uid`), and the leftover processes a run
    kills by uid are, with the same exception, its own."""
    return os.path.realpath(folder)


def sandbox_uid(key: str, base: int) -> int:
    """A uid of the reserved range for this student: distinct students get distinct uids (but for rare collisions,
    which only make two sandboxes share a uid; each still sees nothing of the other)."""
    return base + int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") % 1_000_000


# As an ordinary user, the tasks a sandbox may add to its uid's count (RLIMIT_NPROC) beyond those it has at start.
NPROC_BACKSTOP = 256


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

    key: str  # whose sandbox: submission_key() when grading; as root it picks the uid
    packages: tuple[str, ...] = ("numpy",)
    limits: Limits = field(default_factory=Limits)
    files: tuple[tuple[str, str], ...] = ()  # (host file, path relative to the working folder), bound read-only
    read_only: tuple[tuple[str, str], ...] = ()  # (host path, path inside), e.g. the student server's code
    # (host folder, path inside) bound read-write: the kernel's sockets. Where Landlock exists (python_argv) the
    # sandbox can only make Unix sockets there; writes go to its /tmp and home alone
    shared_dirs: tuple[tuple[str, str], ...] = ()
    binds: tuple[tuple[str, str], ...] | None = None  # package_binds(packages), where the caller has it already
    env: dict = field(default_factory=dict)
    uid_base: int = UID_BASE
    containment: Containment | None = None  # None: the strongest this machine allows (containment())

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

    @property
    def bounded_by(self) -> Containment:
        return self.containment or containment()

    def identity(self) -> str:
        if self.as_root:
            who = f"uid {self.uid} of its own (from the reserved range at {self.uid_base})"
        else:
            who = f"a user namespace of {os.geteuid()} (the grader's own user, without access to its files)"
        writes = (f"its writes confined to its own /tmp and home by Landlock (ABI {landlock.abi()})" if landlock.abi()
                  else "no Landlock in this kernel (its writable host folders, if any, watched from outside)")
        return f"{who}; its processes bounded together by {self.bounded_by.describe()}; {writes}"

    def stopped_for(self, returncode: int | None) -> str:
        """Why the supervisor stopped this sandbox, from the exit status of the process argv started ("" if not)."""
        if returncode == supervisor.STOPPED_MEMORY:
            return (f"its processes together passed the memory limit of {self.limits.memory_bytes / 1024**3:g} GiB "
                    f"per student")
        if returncode == supervisor.STOPPED_TASKS:
            return f"its processes passed the limit of {self.limits.processes} processes and threads per student"
        return ""

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
        for host, inside in package_binds(tuple(self.packages)) if self.binds is None else self.binds:
            args += dirs_for(inside) + ["--ro-bind", host, inside]
        for host, inside in self.read_only:
            args += dirs_for(inside) + ["--ro-bind", host, inside]
        args += dirs_for(HOME + "/x") + ["--size", str(self.limits.tmp_bytes), "--perms", "0777", "--tmpfs", HOME]
        for host, rel in self.files:
            inside = os.path.normpath(os.path.join(HOME, rel))
            if not inside.startswith(HOME + "/"):
                raise ValueError(f"files: {rel!r} leaves the working folder")
            args += dirs_for(inside) + ["--ro-bind", host, inside]
        for host, inside in self.shared_dirs:
            if _beneath(inside, WRITABLE):
                raise ValueError(f"shared_dirs: {inside!r} is beneath a writable place (Landlock would allow writes)")
            args += dirs_for(inside + "/x") + ["--bind", host, inside]
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
        """supervisor (the sandbox as a whole) -> prlimit (each process) -> bwrap (namespaces, filesystem,
        environment) -> [setpriv (own uid, as root)] -> cmd."""
        lim = self.limits
        # As root each sandbox has a uid of its own, so RLIMIT_NPROC bounds it exactly (bubblewrap's two run as root,
        # outside that uid's count). As an ordinary user every sandbox shares the instructor's uid, and RLIMIT_NPROC
        # counts all of that uid's tasks, the classmates' sandboxes started after this one included: a tight value
        # would let one student's kernel starve another's (a grade that changes with the machine's load). There it
        # is only a backstop against a fork bomb between two looks of the supervisor, which counts this sandbox's
        # own processes and stops it past lim.processes.
        if self.as_root:
            nproc = lim.processes - 2
        else:
            nproc = _count_tasks(os.geteuid()) + max(NPROC_BACKSTOP, 4 * lim.processes)
        out = self.bounded_by.argv(lim) + [shutil.which("prlimit") or "prlimit", f"--as={lim.memory_bytes}",
                                           f"--cpu={lim.cpu_seconds}", f"--nproc={nproc}", f"--fsize={lim.file_bytes}",
                                           f"--nofile={lim.open_files}", "--core=0", "--",
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
        """``python -I -S -c boot args`` inside: no site folders but the granted packages at /sandbox/site; where
        the kernel has Landlock, restricted before boot runs to writing beneath its /tmp and home (landlock.py)."""
        first = landlock.boot_source(WRITABLE) if landlock.abi() else ""
        return self.argv([self.python, "-I", "-S", "-c",
                          first + f"import sys; sys.path.append({SITE!r})\n" + boot, *args])


def _beneath(path: str, folders: tuple[str, ...]) -> bool:
    path = os.path.normpath(path)
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


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


def _is_supervisor(pid: int) -> bool:
    """Whether pid runs supervisor.py (its command line is the grader's own: nothing in a sandbox can change it)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return SUPERVISOR.encode() in f.read().split(b"\0")[:4]
    except OSError:
        return False


def kill_tree(pid: int) -> None:
    """Kill a sandbox: bwrap and, through --die-with-parent and the PID namespace, everything inside it. Its
    supervisor is asked to end (SIGTERM) after them, so that it removes the sandbox's cgroups before it exits."""
    supervised = _is_supervisor(pid)
    for p in [*descendants(pid), *([] if supervised else [pid])]:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if supervised:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(pid: int) -> list[int]:
    """Every process under pid, from each thread's list of children (the kernel's /proc/<pid>/task/<tid>/children):
    reads the subtree only, polled many times a second; all of /proc's parent links where that list is missing."""
    if not _CHILDREN_LISTS:
        return _descendants_by_scan(pid)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            threads = os.listdir(f"/proc/{p}/task")
        except OSError:  # it ended
            continue
        for tid in threads:
            try:
                with open(f"/proc/{p}/task/{tid}/children", "rb") as f:
                    found = [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                continue
            out += found
            todo += found
    return out


def _descendants_by_scan(pid: int) -> list[int]:
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


_CHILDREN_LISTS = os.path.exists(f"/proc/self/task/{os.getpid()}/children")  # CONFIG_PROC_CHILDREN, most kernels


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time used by pid and every process under it (alive, or dead and waited for): user + system. A sandbox's
    supervisor's own time (its watching) is not counted: only what it waited for."""
    total = 0
    supervised = _is_supervisor(pid)
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            times = fields[13:15] if supervised and p == pid else fields[11:15]
            total += sum(int(x) for x in times)  # utime, stime, cutime, cstime
        except (OSError, IndexError, ValueError):
            continue
    return total / _TICKS


def run_delay_seconds(pid: int) -> float:
    """Seconds the threads of pid and of every process under it have spent runnable but waiting for a CPU (the
    kernel's schedstat, read from outside): what a busy machine adds to a call's wall-clock time. A sandbox's
    supervisor's own threads are not counted."""
    total = 0
    supervised = _is_supervisor(pid)
    for p in [pid, *descendants(pid)]:
        if supervised and p == pid:
            continue
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat", "rb") as f:
                    total += int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def _opened_up(dir_fd: int, name: str) -> int | None:
    """The folder name under dir_fd, made u+rwx and opened for reading, never following a link (None if it is not
    a folder, or is gone)."""
    try:
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        mode = os.stat(handle).st_mode
        if mode & 0o700 != 0o700:
            os.chmod(f"/proc/self/fd/{handle}", stat.S_IMODE(mode) | 0o700)  # the folder itself, not a link's target
        return os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    finally:
        os.close(handle)


_DEEPEST = 32  # folders nested deeper are moved up to the top first: removing never holds more descriptors


def remove_tree(path: str | None) -> None:
    """Remove a folder that sandboxed code could write into, with whatever it left there: folders it made unreadable
    (chmod 0) are opened up (u+rwx) first; nothing is followed through a link, so nothing outside path is touched;
    deep nesting is flattened as it goes. What cannot be removed (a file system refusing) is left and skipped."""
    if not path:
        return
    parent = os.open(os.path.dirname(os.path.abspath(path)) or "/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        name = os.path.basename(os.path.abspath(path))
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                os.unlink(name, dir_fd=parent)
                return
        except FileNotFoundError:
            return
        top = _opened_up(parent, name)
        if top is None:
            return
        stack, names, skipped, moved = [top], [name], set(), 0
        while stack:
            fd, descended = stack[-1], False
            with os.scandir(fd) as entries:
                for entry in entries:
                    key = (len(stack), entry.name, entry.inode())
                    if key in skipped:
                        continue
                    if not entry.is_dir(follow_symlinks=False):
                        try:
                            os.unlink(entry.name, dir_fd=fd)
                        except OSError:
                            skipped.add(key)
                        continue
                    if len(stack) >= _DEEPEST:
                        moved += 1
                        try:
                            os.rename(entry.name, f".sandbox-flat-{moved}", src_dir_fd=fd, dst_dir_fd=top)
                        except OSError:
                            skipped.add(key)
                        continue
                    child = _opened_up(fd, entry.name)
                    if child is None:
                        skipped.add(key)
                        continue
                    stack.append(child)
                    names.append(entry.name)
                    descended = True
                    break
            if descended:
                continue
            inode = os.fstat(stack.pop()).st_ino
            os.close(fd)
            done = names.pop()
            try:
                os.rmdir(done, dir_fd=stack[-1] if stack else parent)
            except OSError:
                skipped.add((len(stack), done, inode))
    finally:
        os.close(parent)
