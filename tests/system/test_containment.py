"""Limits per student, not per process (issue 18, class 4), through real bubblewrap sandboxes and kernels.

- memory: three forked children that each allocate and touch 200 MiB pass a 512 MiB limit together (each alone is
  under it, so prlimit's per-process bound never fires): the whole sandbox is stopped and the verdict says "memory
  limit", with the cgroup where this machine gives one (as root) and with the watcher (as root, and as an ordinary
  user, for whom it is the only kind on a cgroup v1 machine);
- the process cap: a fork loop holds at most the sandbox's limit of processes and threads;
- the notebook's budget: twenty cells that each sleep under the cell limit, or that each spin under it, end when the
  budget is spent, in bounded time, and the first cell not run says why;
- the kernel's sockets' folder: writes into a subfolder stop the kernel; a folder left there with mode 0 (and its
  contents) is gone afterwards, as root and as an ordinary user.
Each also under four CPU hogs where a grade could depend on timing (the budget's message).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from accounts import as_user, make_user, remove_user, user_python
from corpus import LNKIT_COURSE, WRITE_ATTEMPTS

from nbgrader_sandbox import landlock, sandbox, supervisor
from nbgrader_sandbox.preprocessors import SafeExecute

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

# three children, each under the limit alone, together over it; the parent waits for them
FORKED_HOGS = r'''
import os, time
kids = []
for i in range(3):
    pid = os.fork()
    if pid == 0:
        block = bytearray(200 * 1024**2)
        for j in range(0, len(block), 4096):
            block[j] = 1
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
for k in kids:
    os.waitpid(k, 0)
print("all three held their memory")
'''

FORK_LOOP = r'''
import os, time
made = 0
for i in range(200):
    try:
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        made += 1
    except OSError:
        break
print("forked", made)
'''


def kinds() -> list:
    found = [sandbox.containment()]
    if found[0].kind != "watcher":
        found.append(sandbox.WATCHER)
    return found


def small(**kw) -> sandbox.Limits:
    return sandbox.Limits(**{"tmp_bytes": 16 * 1024**2, "memory_bytes": 512 * 1024**2, **kw})


@pytest.mark.parametrize("bound", kinds(), ids=lambda c: c.kind)
def test_forked_children_pass_the_memory_limit_together(bound):
    box = sandbox.Sandbox(key="hogs/01", limits=small(), containment=bound)
    assert bound.describe() in box.identity()
    start = time.monotonic()
    out = subprocess.run(box.python_argv(FORKED_HOGS), capture_output=True, text=True, timeout=120)
    assert "all three held" not in out.stdout, out.stderr
    assert out.returncode == supervisor.STOPPED_MEMORY, (out.returncode, out.stderr[-2000:])
    assert "memory limit" in box.stopped_for(out.returncode)
    assert "nbgrader-sandbox: stopped" in out.stderr
    assert time.monotonic() - start < 30  # stopped at once, not after the children's 30 s sleep
    # the same children at a limit that holds them all run to the end
    roomy = sandbox.Sandbox(key="hogs/01", limits=small(memory_bytes=1024**3), containment=bound)
    ok = subprocess.run(roomy.python_argv(FORKED_HOGS.replace("time.sleep(30)", "time.sleep(0.5)")),
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "all three held" in ok.stdout, ok.stderr[-2000:]


def test_the_checks_say_memory_limit_when_the_students_processes_pass_it_together():
    from nbgrader_sandbox.checker import run_job

    test = "from lnkit.checks import check_layer_norm\ncheck_layer_norm(layer_norm)\n"
    hogs = FORKED_HOGS + "\ndef layer_norm(x, gamma, beta, eps=1e-5):\n    return x\n"
    out = run_job({"cells": [hogs], "tests": [{"grade_id": "t", "source": test}],
                   "course": LNKIT_COURSE,
                   "limits": {"call_seconds": 2, "start_seconds": 20, "memory_bytes": 512 * 1024**2}})
    verdict = out["verdicts"][0]
    assert not verdict["passed"] and "memory limit" in verdict["evalue"], verdict
    assert "processes together passed it" in verdict["evalue"]


@pytest.mark.parametrize("bound", kinds(), ids=lambda c: c.kind)
def test_a_fork_loop_holds_at_most_the_process_limit(bound):
    box = sandbox.Sandbox(key="forks/01", limits=small(processes=12), containment=bound)
    out = subprocess.run(box.python_argv(FORK_LOOP), capture_output=True, text=True, timeout=120)
    if out.returncode == supervisor.STOPPED_TASKS:  # the watcher saw more than the limit: stopped whole
        assert "processes and threads" in box.stopped_for(out.returncode)
        return
    assert out.returncode == 0, out.stderr[-2000:]
    made = int(out.stdout.split()[-1])
    assert 0 < made <= 12 - 3, out.stdout  # bubblewrap's two and the interpreter count too


def test_a_sandbox_cannot_claim_a_verdict_by_its_exit_status():
    box = sandbox.Sandbox(key="claims/01", limits=small())
    out = subprocess.run(box.python_argv(f"import os; os._exit({supervisor.STOPPED_MEMORY})"), capture_output=True)
    assert out.returncode == 1 and box.stopped_for(out.returncode) == ""


def test_no_cgroup_is_left_behind():
    bound = sandbox.containment()
    if bound.kind not in ("cgroup v1", "cgroup v2"):
        pytest.skip(f"no cgroup is made here ({bound.kind})")
    box = sandbox.Sandbox(key="left/01", limits=small())
    ended = subprocess.Popen(box.python_argv("print('hi')"), stdout=subprocess.DEVNULL)
    ended.wait(timeout=60)
    killed = subprocess.Popen(box.python_argv("import time; time.sleep(30)"))
    time.sleep(1)
    made = [n for p in bound.parents for n in os.listdir(p) if n.startswith(f"nbgrader-sandbox-{killed.pid}-")]
    assert len(made) == len(bound.parents)  # it had one in each hierarchy
    sandbox.kill_tree(killed.pid)  # stopped from outside, as the checker stops a call past its time limit
    killed.wait(timeout=20)
    for parent in bound.parents:  # other graders may be running here: only these two supervisors' cgroups
        prefixes = (f"nbgrader-sandbox-{ended.pid}-", f"nbgrader-sandbox-{killed.pid}-")
        assert not [n for n in os.listdir(parent) if n.startswith(prefixes)]


# --- the kernel: the notebook's budget and the sockets' folder ------------------------------------------------------


def run_notebook(cells: list[str], folder: Path, **settings) -> tuple:
    """SafeExecute on a notebook of these cells, in folder/<student>/<assignment>; (notebook, resources, seconds)."""
    import nbformat
    from traitlets.config import Config

    work = folder / "student" / "assignment"
    work.mkdir(parents=True)
    config = Config()
    for key, value in settings.items():
        section, name = key.split("__")
        setattr(config[section], name, value)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.monotonic()
    nb, resources = SafeExecute(config=config).preprocess(nb, {"metadata": {"path": str(work)}})
    return nb, resources, time.monotonic() - start


def not_run_notice(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                   if "were not run" in o.get("text", ""))


@pytest.fixture
def hogs():
    sandbox.unavailable()  # the grader's one-time work (its probe sandbox) before the load, as in a real run
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    yield
    for p in procs:
        p.kill()
        p.wait()


def test_a_notebook_within_its_budget_is_not_stopped(tmp_path):
    nb, resources, _ = run_notebook(["x = 1", "print(x + 1)"], tmp_path, SafeExecute__timeout=30)
    assert "sandbox_kernel" not in resources and nb.cells[1].outputs[0]["text"] == "2\n"


def test_sleeping_cells_end_at_the_wall_clock_budget(tmp_path, hogs):
    nb, resources, took = run_notebook(["import time"] + ["time.sleep(1.5)"] * 20, tmp_path,
                                       SafeExecute__timeout=2, GradingSandbox__notebook_wall_seconds=6.0)
    ran = sum(1 for c in nb.cells if c.get("execution_count") is not None)
    assert ran <= 1 + 6 / 1.5 + 1, ran  # the budget runs from the kernel's start: then at most these, not all 20
    assert took < 20 * 1.5 + 60, took  # and the kernel's own start and end (slow on a busy machine)
    assert resources["sandbox_kernel"]["stopped"] == "budget"
    assert "budget of 6 s" in resources["sandbox_kernel"]["message"]
    assert "budget of 6 s" in not_run_notice(nb)


def test_spinning_cells_end_at_the_cpu_budget(tmp_path):
    spin = "t = time.process_time()\nwhile time.process_time() - t < 0.8:\n    pass"
    nb, resources, took = run_notebook(["import time"] + [spin] * 20, tmp_path,
                                       SafeExecute__timeout=5, GradingSandbox__notebook_cpu_seconds=5.0)
    assert resources["sandbox_kernel"]["stopped"] == "budget", resources.get("sandbox_kernel")
    assert "budget of 5 CPU seconds" in not_run_notice(nb)
    ran = sum(1 for c in nb.cells if c.get("execution_count") is not None)
    assert ran < 12, ran  # kernel start + at most the cells that fit in 5 CPU seconds


SOCKETS_FOLDER = ("from ipykernel.connect import get_connection_file\nimport os\n"
                  "folder = os.path.dirname(get_connection_file())\n")


SOCKETS_FOLDER_WRITES = SOCKETS_FOLDER + WRITE_ATTEMPTS + r'''
import socket
attempt("new file", lambda: open(os.path.join(folder, "fill"), "wb").write(b"x" * 4 * 1024**2))
attempt("unlinked but open", lambda: unlinked_but_open(folder, 4 * 1024**2))
attempt("folder", lambda: os.makedirs(os.path.join(folder, "a", "b")))
attempt("connection file", lambda: open(os.path.join(folder, "kernel.json"), "a").write(" " * 1024**2))
attempt("remove a socket", lambda: os.unlink(os.path.join(folder, "kernel-1")))
attempt("remove nbgrader's file", lambda: os.unlink(os.path.join(folder, "nbgrader.json")))
attempt("link", lambda: os.symlink("/tmp", os.path.join(folder, "l")))
attempt("a child's new file", lambda: child_creates(os.path.join(folder, "child")))
attempt("socket", lambda: socket.socket(socket.AF_UNIX).bind(os.path.join(folder, "s")))
attempt("/tmp", lambda: open("/tmp/f", "wb").write(b"x" * 1024**2))
attempt("home", lambda: open(os.path.expanduser("~/f"), "wb").write(b"x"))
print(sorted(seen.items()))
'''


SOCKETS_FOLDER_SEEN = str(sorted({
    "new file": "PermissionError", "unlinked but open": "PermissionError", "folder": "PermissionError",
    "connection file": "PermissionError", "remove a socket": "PermissionError",
    "remove nbgrader's file": "PermissionError", "link": "PermissionError", "a child's new file": "PermissionError",
    "socket": "done", "/tmp": "done", "home": "done"}.items())) + "\n"


def test_with_landlock_the_kernel_makes_nothing_but_sockets_in_its_sockets_folder(tmp_path, monkeypatch):
    if not landlock.abi():
        pytest.skip("this kernel has no Landlock: the guard's tests below are the whole defence")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the sockets' folder is made here
    nb, resources, _ = run_notebook([SOCKETS_FOLDER_WRITES, "import os; print(sorted(os.listdir(folder)))"],
                                    tmp_path / "course", SafeExecute__timeout=60)
    assert resources.get("sandbox_kernel") is None, resources["sandbox_kernel"]  # not stopped: nothing got there
    assert nb.cells[0].outputs[0]["text"] == SOCKETS_FOLDER_SEEN
    made = eval(nb.cells[1].outputs[0]["text"])  # noqa: S307 - the list the kernel printed, from a test's own cell
    assert set(made) - {"kernel.json", "nbgrader.json", "s"} <= {f"kernel-{n}" for n in range(1, 1 << 16)}, made
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("sandbox-kernel-")]
    assert f"by Landlock (ABI {landlock.abi()})" in sandbox.Sandbox(key="x/y").identity()  # the reports' isolation


def test_writes_into_a_subfolder_of_the_sockets_folder_stop_the_kernel(tmp_path, monkeypatch):
    """Where Landlock is missing (made so here), the guard is what stops a kernel filling its sockets' folder."""
    monkeypatch.setattr(landlock, "abi", lambda: 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the sockets' folder is made here
    fill = (SOCKETS_FOLDER + "os.makedirs(os.path.join(folder, 'a', 'b'))\n"
            "for i in range(40):\n"
            "    with open(os.path.join(folder, 'a', 'b', f'fill-{i}'), 'wb') as f:\n"
            "        f.write(b'x' * 8 * 1024**2)\n"
            "import time; time.sleep(20)\n")
    nb, resources, took = run_notebook([fill, "print('after')"], tmp_path / "course", SafeExecute__timeout=60,
                                       IsolatedKernelManager__sockets_folder_bytes=4 * 1024**2)
    assert resources["sandbox_kernel"]["stopped"] == "limit", resources.get("sandbox_kernel")
    assert "sockets' folder" in resources["sandbox_kernel"]["message"]
    assert took < 40
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("sandbox-kernel-")]


LOCKED_FOLDER = (SOCKETS_FOLDER + "os.makedirs(os.path.join(folder, 'locked', 'inner'))\n"
                 "open(os.path.join(folder, 'locked', 'inner', 'f'), 'w').write('x')\n"
                 "os.chmod(os.path.join(folder, 'locked', 'inner', 'f'), 0)\n"
                 "os.chmod(os.path.join(folder, 'locked', 'inner'), 0)\n"
                 "os.chmod(os.path.join(folder, 'locked'), 0)\n"
                 "print('locked')\n")


def test_a_locked_folder_left_in_the_sockets_folder_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(landlock, "abi", lambda: 0)  # with Landlock nothing but a socket can be made there
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    nb, _, _ = run_notebook([LOCKED_FOLDER], tmp_path / "course", SafeExecute__timeout=30)
    assert nb.cells[0].outputs[0]["text"] == "locked\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("sandbox-kernel-")]


# --- as an ordinary user: the watcher, and the clean-up of what the kernel left ---------------------------------------

USER_SCRIPT = r'''
import json, os, subprocess, sys, tempfile
sys.path.insert(0, sys.argv[1])
from nbgrader_sandbox import landlock, sandbox
from test_containment import FORKED_HOGS, LOCKED_FOLDER, SOCKETS_FOLDER_WRITES, run_notebook
from pathlib import Path
seen = {"kind": sandbox.containment().kind}
box = sandbox.Sandbox(key="hogs/01", limits=sandbox.Limits(tmp_bytes=16 * 1024**2, memory_bytes=512 * 1024**2))
out = subprocess.run(box.python_argv(FORKED_HOGS), capture_output=True, text=True, timeout=120)
seen["memory"] = [out.returncode, box.stopped_for(out.returncode), "all three held" in out.stdout]
work = Path(tempfile.mkdtemp())
tempfile.tempdir = str(work)
seen["landlock"] = landlock.abi()
if seen["landlock"]:
    nb, _, _ = run_notebook([SOCKETS_FOLDER_WRITES], work / "landlock", SafeExecute__timeout=60)
    seen["writes"] = nb.cells[0].outputs[0].get("text")
abi, landlock.abi = landlock.abi, lambda: 0  # the guard alone, as on a kernel without Landlock
nb, _, _ = run_notebook([LOCKED_FOLDER], work / "course", SafeExecute__timeout=30)
landlock.abi = abi
seen["locked"] = nb.cells[0].outputs[0].get("text")
seen["left"] = sorted(p.name for p in work.iterdir() if p.name.startswith("sandbox-kernel-"))
print(json.dumps(seen))
'''


def test_as_an_ordinary_user_the_watcher_stops_it_and_nothing_is_left():
    if os.geteuid() != 0:
        pytest.skip("this run is already an ordinary user's: see the tests above")
    name = "lnkit-contain-test"
    home = make_user(name)
    base = Path(tempfile.mkdtemp(prefix="lnkit-userpy-"))
    try:
        os.chmod(base, 0o755)
        python = user_python(base)
        shutil.copy(Path(__file__).parent / "test_containment.py", home / "test_containment.py")
        shutil.copy(Path(__file__).parents[1] / "accounts.py", home / "accounts.py")
        shutil.copy(Path(__file__).parents[1] / "corpus.py", home / "corpus.py")
        out = as_user(name, str(python), "-c", USER_SCRIPT, str(home),
                      env={"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(home)}, cwd=home)
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        assert seen["kind"] == "watcher" or seen["kind"].startswith("cgroup v2"), seen
        assert seen["memory"][0] == supervisor.STOPPED_MEMORY and "memory limit" in seen["memory"][1], seen
        assert seen["memory"][2] is False
        assert seen["locked"] == "locked\n" and seen["left"] == [], seen
        if landlock.abi():  # the same machine: what root's kernel is refused, the ordinary user's is too
            assert seen["landlock"] == landlock.abi() and seen["writes"] == SOCKETS_FOLDER_SEEN, seen
    finally:
        remove_user(name)
        shutil.rmtree(base, ignore_errors=True)
