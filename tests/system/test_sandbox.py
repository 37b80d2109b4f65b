"""The sandbox student code runs in (nbgrader_sandbox.sandbox), seen from inside, as root and as an ordinary user.

Each test runs a probe inside a real bubblewrap sandbox and asserts on what it could see and do: no course folder,
no lnkit, no network, no other process, nothing writable but its own size-capped folders, the grader's environment
gone, a daemon that dies with the sandbox, limits on CPU time, memory and processes. Then the per-call time limit of
the student server, which counts CPU seconds: a sleeping call is not stopped, an endless loop is, under load too.
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
from corpus import LNKIT_COURSE

from nbgrader_sandbox import sandbox
from nbgrader_sandbox.checker import run_job
from nbgrader_sandbox.settings import GradingSandbox

ROOT = Path(__file__).resolve().parents[2]

PROBE = r'''
import json, os, socket, sys
seen = {"uid": os.getuid(), "pid": os.getpid(), "cwd": os.getcwd(), "root": sorted(os.listdir("/")),
        "env": sorted(os.environ), "procs": sorted(p for p in os.listdir("/proc") if p.isdigit())}
try:
    import lnkit
    seen["lnkit"] = lnkit.__file__
except ImportError:
    seen["lnkit"] = None
seen["course"] = os.path.exists(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=2)
    seen["network"] = True
except OSError:
    seen["network"] = False
writable = {}
for folder in ("/", "/dev", "/dev/shm", "/usr", "/tmp", "/home/student", "/sandbox/site"):
    try:
        with open(os.path.join(folder, "probe"), "w") as f:
            f.write("x")
        writable[folder] = True
    except OSError:
        writable[folder] = False
seen["writable"] = writable
try:
    with open("/tmp/big", "wb") as f:
        for _ in range(64):
            f.write(b"x" * 1024**2)
    seen["tmp_capped"] = False
except OSError:
    seen["tmp_capped"] = True
seen["numpy"] = __import__("numpy").__version__
print(json.dumps(seen))
'''


def probe(box: sandbox.Sandbox, *argv: str, runner=None) -> dict:
    cmd = box.python_argv(PROBE, *argv)
    out = (runner or (lambda c: subprocess.run(c, capture_output=True, text=True)))(cmd)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def small(**kw) -> sandbox.Limits:
    return sandbox.Limits(**{"tmp_bytes": 16 * 1024**2, **kw})


@pytest.fixture(scope="module")
def listener():
    """A TCP server on the host's loopback: a sandbox must not reach it."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def check_inside(seen: dict) -> None:
    assert seen["pid"] == 2 and seen["procs"] == ["1", "2"], seen["procs"]  # its own PID namespace
    assert seen["cwd"] == "/home/student"
    # the system's folders and the sandbox's own; "root" only where the interpreter lives under /root (pyenv)
    assert set(seen["root"]) <= {"bin", "dev", "etc", "home", "lib", "lib64", "proc", "root", "sandbox", "sbin", "tmp",
                                 "usr"}, seen["root"]
    assert seen["lnkit"] is None and seen["course"] is False and seen["network"] is False
    assert "LNKIT_TEST_SECRET" not in seen["env"] and "PATH" in seen["env"]
    assert seen["writable"] == {"/": False, "/dev": False, "/dev/shm": False, "/usr": False, "/tmp": True,
                                "/home/student": True, "/sandbox/site": False}, seen["writable"]
    assert seen["tmp_capped"] is True


def test_student_code_sees_nothing_of_the_grader(listener, monkeypatch):
    monkeypatch.setenv("LNKIT_TEST_SECRET", "the grader's")
    seen = probe(sandbox.Sandbox(key="alice/01", limits=small()), str(ROOT), str(listener))
    check_inside(seen)
    if os.geteuid() == 0:
        assert seen["uid"] == sandbox.sandbox_uid("alice/01", 2_100_000_000)
        other = probe(sandbox.Sandbox(key="bob/01", limits=small()), str(ROOT), str(listener))
        assert other["uid"] != seen["uid"]  # a uid of its own per student


def test_an_ordinary_user_gets_the_same_sandbox(listener, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("this run is already an ordinary user's: see the test above")
    name = "lnkit-sandbox-test"
    home = make_user(name)
    base = Path(tempfile.mkdtemp(prefix="lnkit-userpy-"))
    try:
        os.chmod(base, 0o755)
        python = user_python(base)
        code = ("import json, sys\nfrom nbgrader_sandbox import sandbox\n"
                "box = sandbox.Sandbox(key='alice/01', limits=sandbox.Limits(tmp_bytes=16 * 1024**2))\n"
                f"print(json.dumps(box.python_argv({PROBE!r}, *sys.argv[1:])))\n")
        argv = json.loads(as_user(name, str(python), "-c", code, str(ROOT), str(listener), env={"PATH": "/usr/bin:/bin",
                          "HOME": str(home), "LNKIT_TEST_SECRET": "x"}, cwd=home).stdout)
        out = as_user(name, *argv, env={"PATH": "/usr/bin:/bin", "LNKIT_TEST_SECRET": "x"}, cwd=home)
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        check_inside(seen)
        assert seen["uid"] == int(subprocess.run(["id", "-u", name], capture_output=True, text=True).stdout)
    finally:
        remove_user(name)
        shutil.rmtree(base, ignore_errors=True)


def test_a_double_forked_daemon_ends_with_its_sandbox(tmp_path):
    shared = tmp_path / "beat"
    shared.mkdir()
    os.chmod(shared, 0o777)
    # its heartbeat: a Unix socket made in a shared folder every 50 ms (sockets are all a sandbox may make there)
    daemon = ("import os, socket, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
              "        for i in range(10**6):\n            socket.socket(socket.AF_UNIX).bind(f'/run/beat/{i}')\n"
              "            time.sleep(0.05)\n    os._exit(0)\ntime.sleep(0.5)\n")
    box = sandbox.Sandbox(key="daemon/01", limits=small(), shared_dirs=((str(shared), "/run/beat"),))
    subprocess.run(box.python_argv(daemon), check=True, timeout=60)
    time.sleep(0.3)
    beats = len(os.listdir(shared))
    assert beats > 0  # it did run
    time.sleep(1.0)
    assert len(os.listdir(shared)) == beats  # and died with the sandbox


@pytest.mark.parametrize("what, code, limits", [
    ("cpu", "while True: pass", {"cpu_seconds": 1}),
    ("memory", "b = bytearray(1024**3)", {"memory_bytes": 512 * 1024**2}),
    ("processes", "import os\nfor i in range(200):\n    os.fork() or (__import__('time').sleep(5), os._exit(0))",
     {"processes": 16}),
    ("file size", "open('/tmp/f', 'wb').write(b'x' * 3 * 1024**2)", {"file_bytes": 2 * 1024**2}),
])
def test_limits_stop_what_exceeds_them(what, code, limits):
    box = sandbox.Sandbox(key="limits/01", limits=small(**limits))
    start = time.monotonic()
    out = subprocess.run(box.python_argv(code), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, (what, out.stdout, out.stderr)
    assert time.monotonic() - start < 60


def test_without_bubblewrap_grading_refuses_and_says_what_to_install(monkeypatch):
    sandbox.unavailable.cache_clear()
    real = sandbox.shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda tool, *a, **k: None if tool == "bwrap" else real(tool, *a, **k))
    try:
        reason = sandbox.unavailable()
        assert "bwrap" in reason and "apt-get install bubblewrap" in reason
        refusal = GradingSandbox().refusal()
        assert "refuses to run student code" in refusal and "allow_unsandboxed" in refusal
        assert GradingSandbox(allow_unsandboxed=True).refusal() == ""
        out = run_job({"cells": ["def f(): pass"], "tests": [{"grade_id": "t", "source": "f()"}], "limits": {}})
        assert out["refused"] and "apt-get install bubblewrap" in out["error"]
    finally:
        sandbox.unavailable.cache_clear()


SLEEPER = ("import time\nimport numpy as np\n"
           "def layer_norm(x, gamma, beta, eps=1e-5):\n"
           "    time.sleep(0.15)  # slow by the clock, not by the CPU\n"
           "    x = np.asarray(x)\n    w = x.astype(np.float32) if x.dtype == np.float16 else x\n"
           "    m = w.mean(-1, keepdims=True)\n    v = ((w - m) ** 2).mean(-1, keepdims=True)\n"
           "    return ((w - m) / np.sqrt(v + eps) * gamma + beta).astype(x.dtype)\n")
SPINNER = "def layer_norm(x, gamma, beta, eps=1e-5):\n    while True:\n        pass\n"
TEST = "from lnkit.checks import check_layer_norm\ncheck_layer_norm(layer_norm)\n"


def grade(source: str) -> dict:
    return run_job({"cells": [source], "tests": [{"grade_id": "t", "source": TEST}],
                    "course": LNKIT_COURSE, "limits": {"call_seconds": 0.1, "start_seconds": 10}})["verdicts"][0]


def test_call_limits_count_cpu_seconds_not_the_clock_even_under_load():
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        slow = grade(SLEEPER)  # each call sleeps past the 0.1 s limit, using no CPU: not stopped
        spin = grade(SPINNER)
    finally:
        for hog in hogs:
            hog.kill()
    assert slow["passed"], slow["evalue"]
    assert not spin["passed"] and "did not return within the time limit" in spin["evalue"]
