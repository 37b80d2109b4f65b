"""nbgrader_sandbox.course_check: it must see when students could read or change the course's secrets, say the exact
chmod that closes them, and stay quiet about a course that is closed (by its own bits or by a folder above it)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nbgrader_sandbox.course_check import check_course, fix, main, report, warn_if_exposed

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def open_place():
    """A folder every user can enter, as /home/<instructor> is after `useradd -m` with umask 022 (drwxr-xr-x).
    Not pytest's tmp_path: /tmp/pytest-of-<user> is private, which would hide everything below it."""
    place = Path(tempfile.mkdtemp(prefix="lnkit-course-check-"))
    place.chmod(0o755)
    yield place
    subprocess.run(["rm", "-rf", str(place)], check=False)


def make_course(place: Path) -> Path:
    """A course folder as a clone and `nbgrader collect` leave it with the usual umask."""
    course = place / "layernorm"
    (course / "solutions" / "01-layernorm").mkdir(parents=True)
    # the folders where the course puts them (nbgrader's CourseDirectory): the check reads them from here
    (course / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.source_directory = 'solutions'\n"
                                               "c.CourseDirectory.release_directory = 'exercises'\n")
    (course / ".grading-secret").write_bytes(b"s" * 32)
    (course / "solutions" / "01-layernorm" / "01-layernorm.ipynb").write_text("{}")
    (course / "exercises" / "01-layernorm").mkdir(parents=True)
    (course / "exercises" / "01-layernorm" / "01-layernorm.ipynb").write_text("{}")
    (course / "gradebook.db").write_bytes(b"")
    sub = course / "submitted" / "ada" / "01-layernorm"
    sub.mkdir(parents=True)
    (sub / "01-layernorm.ipynb").write_text("{}")
    for p in [course, *course.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    sub.chmod(0o777)  # what collect left behind (the report)
    return course


def test_an_open_course_is_reported_with_the_exact_fix(open_place):
    course = make_course(open_place)
    found = check_course(course)
    kinds = {(e.secret, e.how) for e in found}
    assert ("solutions", "readable by every user of this machine") in kinds
    assert ("gradebook.db", "readable by every user of this machine") in kinds
    assert ("submitted", "readable by every user of this machine") in kinds
    assert ("submitted", "writable by every user of this machine") in kinds
    assert (".grading-secret", "readable by every user of this machine") in kinds
    assert not any(e.secret == "exercises" for e in found)  # the release is meant to be read
    text = report(course, found)
    assert f"chmod -R o-rwx {course / 'solutions'}" in text
    assert f"chmod o-rwx {course / 'gradebook.db'}" in text
    assert f"chmod -R o-rwx {course / 'submitted'}" in text
    assert main([str(course)]) == 1
    warned = io.StringIO()
    assert warn_if_exposed(course, stream=warned) == found and "STUDENTS CAN READ" in warned.getvalue()


def test_the_printed_fix_closes_it_and_leaves_the_release_open(open_place):
    course = make_course(open_place)
    for command in dict.fromkeys(e.fix for e in check_course(course)):
        subprocess.run(command, shell=True, check=True)  # the commands exactly as printed
    assert check_course(course) == []
    mode = (course / "exercises" / "01-layernorm" / "01-layernorm.ipynb").stat().st_mode
    assert mode & stat.S_IROTH


def test_fix_option(open_place, capsys):
    course = make_course(open_place)
    assert main([str(course), "--fix"]) == 0
    out = capsys.readouterr().out
    assert "ran: chmod -R o-rwx" in out and "private to their owner" in out
    assert not (course / "solutions").stat().st_mode & 0o007
    assert not fix([])


def test_a_closed_folder_above_hides_everything(open_place):
    course = make_course(open_place)
    open_place.chmod(0o700)  # `chmod 700 ~`: nothing below can be reached by others, whatever its own bits
    assert check_course(course) == []
    assert "private" in report(course, [])


def test_group_members_count_as_students(open_place):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a group with a member")
    course = make_course(open_place)
    for p in [course, *course.rglob("*")]:
        p.chmod((p.stat().st_mode & ~0o007) | (0o050 if p.is_dir() else 0o040))
    open_place.chmod(0o751)
    group, member = "lnkit-cc-group", "lnkit-cc-member"
    subprocess.run(["userdel", member], capture_output=True)
    subprocess.run(["groupdel", group], capture_output=True)
    subprocess.run(["groupadd", group], check=True)
    try:
        subprocess.run(["useradd", "-M", "-G", group, member], check=True)
        gid = int(subprocess.run(["getent", "group", group], capture_output=True, text=True).stdout.split(":")[2])
        for p in [course, *course.rglob("*")]:
            os.chown(p, 0, gid)
        found = check_course(course)
        assert {e.secret for e in found} >= {"solutions", "gradebook.db", "submitted"}
        assert all(f"group {group}" in e.how for e in found), found
        assert f"chmod -R g-rwx {course / 'solutions'}" in report(course, found)
    finally:
        subprocess.run(["userdel", member], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)


def test_bad_root_names_the_argument(tmp_path):
    with pytest.raises(ValueError, match="root"):
        check_course(tmp_path / "missing")


def test_runs_as_a_module(open_place):
    course = make_course(open_place)
    out = subprocess.run([sys.executable, "-m", "nbgrader_sandbox.course_check", str(course)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1 and "STUDENTS CAN READ OR CHANGE" in out.stdout, out.stdout + out.stderr
