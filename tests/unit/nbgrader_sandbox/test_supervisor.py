"""The supervisor's housekeeping that needs no sandbox: the sweep of cgroups that a killed supervisor left behind."""

from __future__ import annotations

import os
import subprocess
import sys

from nbgrader_sandbox import supervisor


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_sweep_removes_the_cgroups_of_dead_supervisors_and_nothing_else(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    names = {f"{supervisor.PREFIX}{dead}-0a1b2c3d": False,  # its supervisor is gone: removed
             f"{supervisor.PREFIX}{alive}-0a1b2c3d": True,  # still in use by a live supervisor
             f"other-{dead}-0a1b2c3d": True,  # not ours
             f"{supervisor.PREFIX}notapid-00": True}
    for name in names:
        (tmp_path / name).mkdir()
    supervisor._sweep(str(tmp_path))
    assert {n: (tmp_path / n).exists() for n in names} == names


def test_the_sweep_leaves_a_cgroup_that_refuses_removal(tmp_path):
    """A cgroup with tasks in it refuses rmdir; here a folder that is not empty stands in for one."""
    name = f"{supervisor.PREFIX}{_dead_pid()}-ffff"
    (tmp_path / name).mkdir()
    (tmp_path / name / "tasks").write_text("1\n")
    supervisor._sweep(str(tmp_path))
    assert (tmp_path / name).exists()
