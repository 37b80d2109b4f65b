"""What one grading process finds out once and its per-notebook checkers adopt: the machine's facts, the package
binds; and the process tree read from the kernel's lists of children."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from nbgrader_sandbox import remote, sandbox


@pytest.fixture
def fresh_facts(monkeypatch):
    monkeypatch.setattr(sandbox, "_adopted", None)
    sandbox.unavailable.cache_clear()
    sandbox.containment.cache_clear()
    yield
    sandbox.unavailable.cache_clear()
    sandbox.containment.cache_clear()


def test_a_child_adopts_the_facts_without_probing(fresh_facts, monkeypatch):
    facts = {"unavailable": "", "containment": ["cgroup v1", ["/sys/fs/cgroup/memory/x", "/sys/fs/cgroup/pids/x"]]}
    sandbox.adopt_machine_facts(facts)
    monkeypatch.setattr(sandbox, "_run_quiet", lambda *a, **k: pytest.fail("probed although the facts were given"))
    monkeypatch.setattr(sandbox, "_cgroup_mounts", lambda: pytest.fail("probed although the facts were given"))
    assert sandbox.unavailable() == ""
    assert sandbox.containment() == sandbox.Containment("cgroup v1", tuple(facts["containment"][1]))
    assert sandbox.machine_facts() == facts  # what it would hand on in turn


def test_facts_that_say_no_sandbox_are_kept(fresh_facts):
    sandbox.adopt_machine_facts({"unavailable": "`bwrap` is not installed", "containment": ["watcher", []]})
    assert sandbox.unavailable() == "`bwrap` is not installed"
    with pytest.raises(remote.SandboxRefused, match="bwrap"):
        remote.StudentServer(["x = 1"], remote.Limits())


def test_bad_facts_are_refused(fresh_facts):
    with pytest.raises(ValueError, match="Containment.kind"):
        sandbox.adopt_machine_facts({"unavailable": "", "containment": ["cgroup v9", []]})


def test_given_binds_are_what_the_sandbox_mounts_and_none_are_looked_up(monkeypatch):
    binds = sandbox.package_binds(remote.server_packages(()))
    assert binds and all(inside.startswith(sandbox.SITE + "/") for _, inside in binds)
    limits = remote.Limits(binds=[list(b) for b in binds])  # as JSON carries them
    assert limits.binds == binds
    monkeypatch.setattr(sandbox, "package_binds", lambda *a: pytest.fail("looked up although given"))
    box = sandbox.Sandbox(key="a/b", packages=remote.server_packages(()), binds=limits.binds)
    mounts = box._mounts()
    for host, inside in binds:
        i = mounts.index(inside)
        assert mounts[i - 2:i] == ["--ro-bind", host]


def test_the_server_always_gets_numpy_first_and_each_package_once():
    assert remote.server_packages(()) == ("numpy",)
    assert remote.server_packages(("torch", "numpy", "torch")) == ("numpy", "torch")


def test_the_process_tree_from_lists_of_children_is_the_scans():
    # a parent with a thread that starts a child, and a grandchild: the lists of every thread are read
    code = ("import subprocess, sys, threading, time\n"
            "def start():\n"
            "    subprocess.Popen([sys.executable, '-c', 'import subprocess, sys; "
            "subprocess.Popen([sys.executable, \"-c\", \"import time; time.sleep(30)\"]); "
            "import time; time.sleep(30)'])\n"
            "    time.sleep(30)  # the thread lives on: its child is on its list, not the main thread's\n"
            "threading.Thread(target=start, daemon=True).start()\n"
            "time.sleep(30)\n")
    top = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(100):
            found = sandbox.descendants(top.pid)
            if len(found) == 2:
                break
            time.sleep(0.05)
        assert len(found) == 2, found
        assert sorted(found) == sorted(sandbox._descendants_by_scan(top.pid))
        assert sandbox.descendants(2**22 + 7) == []  # no such process: nothing, no error
    finally:
        for pid in [*sandbox.descendants(top.pid), top.pid]:
            subprocess.run(["kill", "-9", str(pid)])
        top.wait()
