"""The supervisor of one sandbox: bounds all its processes together, from outside, and says why it stopped them.

:meth:`nbgrader_sandbox.sandbox.Sandbox.argv` puts it in front of prlimit and bwrap; it runs as the grader's user,
outside the sandbox, with nothing but built-in modules (it starts in 15 ms: no json, no enum):
``python -I -S supervisor.py KIND MEMORY_BYTES TASKS [PARENT_FOLDER...] -- command...``, KIND one of

- ``cgroup``: a child cgroup is made under each parent folder (cgroup v1: the memory and the pids hierarchy; v2: one
  folder) with the memory and task limits, and the command is put in it before it runs: the kernel bounds the sum of
  the sandbox's memory and refuses a fork past the task count. When the kernel killed a process of it for memory
  (its OOM count rose), the whole sandbox is stopped.
- ``scope``: the supervisor was started in a cgroup v2 scope with those limits (``systemd-run --user --scope``); it
  watches that scope's OOM count as above.
- ``watcher``: no cgroup can be made (an ordinary user on a cgroup v1 machine). Every 50 ms it finds the sandbox's
  processes from outside, through /proc (every descendant of the command: no process can change its parent, and an
  orphan goes to the sandbox's own init, itself a descendant), and adds up their resident memory; past the limit it
  measures their proportional set size (a page shared by n processes counts 1/n for each) and stops the whole
  sandbox if that passes too; it stops it as well when its processes hold more threads than the task limit.

Its exit status is the command's (128 + the signal that killed it), except STOPPED_MEMORY and STOPPED_TASKS: the
supervisor stopped the sandbox for that limit. A command that exits with one of these by itself is reported as 1, so
that no sandbox can claim a verdict it did not earn. SETUP_FAILED: no cgroup could be made; the command never ran.
"""

import _signal as signal  # signal's own core: the public module imports enum (20 ms more per sandbox)
import os
import select
import sys
import time

STOPPED_MEMORY = 250
STOPPED_TASKS = 251
SETUP_FAILED = 125
POLL = 0.05  # seconds between two looks at the sandbox
PAGE = os.sysconf("SC_PAGE_SIZE")
PREFIX = "nbgrader-sandbox-"  # the cgroups this makes: nbgrader-sandbox-<supervisor pid>-<random>


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(folder: str, name: str, value) -> None:
    with open(os.path.join(folder, name), "w") as f:
        f.write(str(value))


def _sweep(parent: str) -> None:
    """Remove the cgroups of supervisors that were killed before they could (a cgroup still in use refuses)."""
    for name in os.listdir(parent):
        pid = name[len(PREFIX):].split("-")[0] if name.startswith(PREFIX) else ""
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass


def make_cgroups(parents: list[str], memory: int, tasks: int) -> list[str]:
    """A child cgroup under each parent, with the limits; raises if the limits could not all be set."""
    name = f"{PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
    made, bounded = [], set()
    try:
        for parent in parents:
            _sweep(parent)
            path = os.path.join(parent, name)
            os.mkdir(path, 0o755)
            made.append(path)
            files = set(os.listdir(path))
            if "memory.limit_in_bytes" in files:  # v1; with swap accounting, swap counts too
                _write(path, "memory.limit_in_bytes", memory)
                if "memory.memsw.limit_in_bytes" in files:
                    _write(path, "memory.memsw.limit_in_bytes", memory)
                bounded.add("memory")
            if "memory.max" in files:  # v2
                _write(path, "memory.max", memory)
                if "memory.swap.max" in files:
                    _write(path, "memory.swap.max", 0)
                bounded.add("memory")
            if "pids.max" in files:
                _write(path, "pids.max", tasks)
                bounded.add("pids")
        if bounded != {"memory", "pids"}:
            raise OSError(f"the cgroups made ({', '.join(made)}) do not bound "
                          f"{' and '.join({'memory', 'pids'} - bounded)}")
    except BaseException:
        remove_cgroups(made)
        raise
    return made


def oom_kills(folders: list[str]) -> int:
    """How many processes the kernel killed for memory in these cgroups (v1: memory.oom_control; v2: memory.events)."""
    total = 0
    for folder in folders:
        for name in ("memory.oom_control", "memory.events"):
            try:
                text = _read(os.path.join(folder, name))
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    total += int(value)
    return total


def remove_cgroups(folders: list[str]) -> None:
    """Kill whatever is left in them, then remove them (a cgroup with a process in it cannot be removed)."""
    deadline = time.monotonic() + 5
    for folder in folders:
        while os.path.isdir(folder):
            try:
                pids = [int(p) for p in _read(os.path.join(folder, "cgroup.procs")).split()]
            except OSError:
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.rmdir(folder)
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)


def processes(root: int) -> list[tuple[int, int, int]]:
    """(pid, threads, resident pages) of root and every process under it, from /proc (the kernel's own account)."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()  # the name, in parentheses, may hold anything
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        info[pid] = (int(fields[17]), int(fields[21]))  # num_threads, rss (fields 20 and 24 of proc(5))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in info:
            out.append((pid, *info[pid]))
        todo.extend(children.get(pid, []))
    return out


def proportional_bytes(pid: int, resident_pages: int) -> int:
    """pid's proportional set size (shared pages divided among the processes sharing them); its resident size where
    that cannot be read."""
    try:
        for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resident_pages * PAGE


def watch_once(root: int, memory: int, tasks: int) -> tuple[int, str]:
    """(exit status, why) when the sandbox under root passes a limit; (0, "") while it does not."""
    found = processes(root)
    threads = sum(t for _, t, _ in found)
    if threads > tasks:
        return STOPPED_TASKS, f"its processes held {threads} threads, over the limit of {tasks}"
    if sum(r for _, _, r in found) * PAGE > memory:
        used = sum(proportional_bytes(pid, r) for pid, _, r in found)
        if used > memory:
            return STOPPED_MEMORY, (f"its processes together used {used / 1024**2:.0f} MiB, over the limit of "
                                    f"{memory / 1024**2:.0f} MiB")
    return 0, ""


def kill_all(root: int) -> None:
    for pid, _, _ in processes(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") < 3 or argv.index("--") == len(argv) - 1:
        print("usage: supervisor.py KIND MEMORY_BYTES TASKS [PARENT_FOLDER...] -- command...", file=sys.stderr)
        return 2
    split = argv.index("--")
    (kind, memory, tasks), parents, cmd = argv[:3], argv[3:split], argv[split + 1:]
    memory, tasks = int(memory), int(tasks)
    if kind not in ("cgroup", "scope", "watcher"):
        print(f"nbgrader-sandbox: unknown kind {kind!r}; expected cgroup, scope or watcher", file=sys.stderr)
        return 2
    cgroups: list[str] = []
    watched: list[str] = []
    try:
        if kind == "cgroup":
            cgroups = watched = make_cgroups(parents, memory, tasks)
        elif kind == "scope":
            own = _read("/proc/self/cgroup").splitlines()[0].split("::", 1)[1].strip()
            watched = [os.path.join(parents[0], own.lstrip("/"))]
            limit = _read(os.path.join(watched[0], "memory.max")).strip()
            if limit == "max" or int(limit) > memory:
                raise OSError(f"the scope {watched[0]} has no memory limit of at most {memory}")
    except (OSError, ValueError, KeyError, IndexError) as e:
        print(f"nbgrader-sandbox: could not bound the sandbox as a whole: {e}", file=sys.stderr)
        return SETUP_FAILED
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    child = os.fork()
    if child == 0:
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            for folder in cgroups:  # in before it runs anything: no fork can escape
                _write(folder, "cgroup.procs", os.getpid())
            os.execv(cmd[0], cmd)
        except BaseException as e:  # noqa: BLE001 - whatever failed, the command must not run unbounded
            os.write(2, f"nbgrader-sandbox: could not start {cmd[0]}: {e}\n".encode())
        os._exit(SETUP_FAILED)
    try:
        ended = os.pidfd_open(child)
    except (AttributeError, OSError):
        ended = None
    code, why = 0, ""
    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            break
        if stop:
            code = 128 + stop[0]
            break
        if watched and oom_kills(watched):
            code, why = STOPPED_MEMORY, f"its processes together passed the memory limit of {memory / 1024**2:.0f} MiB"
        elif kind == "watcher":
            code, why = watch_once(child, memory, tasks)
        if code:
            break
        if ended is not None:
            select.select([ended], [], [], POLL)
        else:
            time.sleep(POLL)
    if not pid:  # stopped: the whole sandbox, then wait for its bwrap
        kill_all(child)
        _, status = os.waitpid(child, 0)
    if not code and watched and oom_kills(watched):  # it ended on its own, but the kernel had killed for memory
        code, why = STOPPED_MEMORY, f"its processes together passed the memory limit of {memory / 1024**2:.0f} MiB"
    remove_cgroups(cgroups)
    if why:
        print(f"nbgrader-sandbox: stopped: {why}", file=sys.stderr)
    if code:
        return code
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    code = os.WEXITSTATUS(status)
    return 1 if code in (STOPPED_MEMORY, STOPPED_TASKS) else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
