"""Which uid a student's sandbox gets as root: one per submission folder, so two courses never share one."""

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
