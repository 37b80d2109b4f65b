"""Which uid a student's sandbox gets as root: one per submission folder (two courses: two uids but for rare hash
collisions)."""

from __future__ import annotations

import os

from nbgrader_sandbox.limits import UID_BASE
from nbgrader_sandbox.sandbox import Sandbox, sandbox_uid, submission_key


def _submission(course, student="ada", assignment="hw1"):
    folder = course / "autograded" / student / assignment
    folder.mkdir(parents=True)
    return folder


def test_one_student_in_two_course_folders_gets_two_uids(tmp_path):
    a, b = _submission(tmp_path / "section-a"), _submission(tmp_path / "section-b")
    uids = {sandbox_uid(submission_key(str(f)), UID_BASE) for f in (a, b)}
    assert len(uids) == 2 and all(UID_BASE <= u < UID_BASE + 1_000_000 for u in uids)


def test_every_path_to_one_folder_gives_one_uid(tmp_path):
    """The kernel sees its working folder, the checker nbgrader's path, the parallel command the layout's: one key."""
    folder = _submission(tmp_path / "course")
    (tmp_path / "link").symlink_to(tmp_path / "course")
    paths = [str(folder), str(tmp_path / "link" / "autograded" / "ada" / "hw1"),
             os.path.relpath(folder) + "/", str(folder / "." / ".." / "hw1")]
    assert len({submission_key(p) for p in paths}) == 1


def test_the_uid_is_the_sandboxs_own_only_as_root(tmp_path):
    box = Sandbox(key=submission_key(str(_submission(tmp_path))), packages=())
    expected = sandbox_uid(box.key, UID_BASE) if os.geteuid() == 0 else os.geteuid()
    assert box.uid == expected


# --- which files a granted package brings into the sandbox --------------------------------------------------------

def test_an_import_name_is_traced_to_the_distribution_that_installs_it():
    from nbgrader_sandbox.sandbox import _distribution_names

    # import names that differ from their distributions' names, and one that nothing installs
    assert _distribution_names("yaml") == ["pyyaml"]
    assert _distribution_names("zmq") == ["pyzmq"]
    assert _distribution_names("_pytest") == ["pytest"]
    assert _distribution_names("no_such_module_anywhere") == []


def test_a_granted_package_brings_its_requirements_and_nothing_else():
    import importlib.metadata as md

    from nbgrader_sandbox.sandbox import SITE, package_binds

    inside = {dest for _, dest in package_binds(("ipykernel",))}
    # ipykernel and what it needs, recursively (pyzmq's zmq through jupyter-client's requirement)
    assert {f"{SITE}/ipykernel", f"{SITE}/zmq", f"{SITE}/jupyter_client", f"{SITE}/traitlets"} <= inside
    assert f"{SITE}/ipykernel-{md.version('ipykernel')}.dist-info" in inside
    # not granted, not needed by ipykernel: absent
    assert not {f"{SITE}/torch", f"{SITE}/nbgrader", f"{SITE}/numpy", f"{SITE}/lnkit"} & inside
