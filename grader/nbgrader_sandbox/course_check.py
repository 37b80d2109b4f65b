"""Can students read the course folder? A check for the instructor, with the exact fix.

The course folder holds what students must never see: the sources with solutions and hidden tests (``solutions/``),
the gradebook (which stores the hidden tests too), every student's submission, grades and feedback. On a shared
machine or a JupyterHub, a home folder made by ``useradd -m`` with the usual umask (022) is open to everyone
(drwxr-xr-x), and so is a clone made there: any student can then read the solutions with ``cat``, no grading needed.
After ``nbgrader collect``, ``submitted/<student>/`` may even be writable by everyone.

Run it on its own::

    python -m nbgrader_sandbox.course_check [COURSE_ROOT]          # exit status 1 when something is exposed
    python -m nbgrader_sandbox.course_check [COURSE_ROOT] --fix    # run the printed chmod commands

The grading commands call :func:`warn_if_exposed`, which warns loudly when students could read or change these
files. "Students" here are the users who are neither the file's owner nor, where the
group has other members, in its group: the check looks at permission bits along the whole path, as the kernel does.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path


def secrets(root: str | os.PathLike) -> dict[str, str]:
    """What must stay private, relative to the course root: nbgrader's folders and gradebook where the course's
    nbgrader_config.py puts them (nbgrader's defaults without one), the course's secret, the grades, the history."""
    from .layout import CourseLayout, for_course

    root = os.path.abspath(root)
    layout = for_course(root) if os.path.exists(os.path.join(root, "nbgrader_config.py")) else CourseLayout(root)
    gradebook = layout.gradebook or os.path.join(root, "gradebook.db")
    found = {layout.source: "the sources: solutions and hidden tests",
             os.path.relpath(gradebook, layout.root): "the gradebook: every grade, and the hidden tests",
             layout.submitted: "the students' submissions",
             layout.autograded: "the graded submissions",
             layout.feedback: "every student's feedback",
             "grades.csv": "the exported grades",
             os.path.relpath(layout.secret, layout.root):
                 "the course's secret, from which every hidden case is drawn",
             ".git": "the repository's history, solutions included"}
    return {name: what for name, what in found.items() if not name.startswith("..")}


@dataclass(frozen=True)
class Exposure:
    path: Path  # the secret, or the first file below it found exposed
    secret: str  # what it belongs to, a key of secrets(root)
    how: str  # "readable by others", "writable by others", "readable by group lnhub-students", ...
    fix: str  # the shell command that closes it
    what: str = ""  # the secret in words

    def __str__(self) -> str:
        return f"{self.path} ({self.what or self.secret}) is {self.how}"


def _group_has_others(gid: int, owner_uid: int) -> str | None:
    """The group's name when users other than the owner belong to it (e.g. a shared 'students' group)."""
    try:
        group = grp.getgrgid(gid)
    except KeyError:
        return None
    try:
        owner = pwd.getpwuid(owner_uid).pw_name
    except KeyError:
        owner = None
    members = {m for m in group.gr_mem if m != owner}
    if not members:
        members = {p.pw_name for p in pwd.getpwall() if p.pw_gid == gid and p.pw_uid != owner_uid}
    return group.gr_name if members else None


def _reachable(path: Path, bit_other: int, bit_group: int) -> tuple[bool, bool]:
    """Whether 'others' (and the members of each folder's group) can traverse every folder above path."""
    others = groups = True
    for folder in list(path.parents)[::-1]:
        try:
            st = folder.stat()
        except OSError:
            return False, False
        if not st.st_mode & bit_other:
            others = False
        if not (st.st_mode & bit_group and _group_has_others(st.st_gid, st.st_uid)) and not st.st_mode & bit_other:
            groups = False
    return others, groups


def _walk(path: Path):
    yield path
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                yield Path(dirpath) / name


def check_course(root: str | os.PathLike) -> list[Exposure]:
    """Every secret of the course folder that users other than the instructor could read or change.

    A secret counts as readable when every folder above it lets others through (x) and it, or anything below it,
    lets others read (r, or x for a folder: names like solutions/01-layernorm/01-layernorm.ipynb can be guessed).
    One exposure is reported per secret and kind, with the chmod that closes the whole secret.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise ValueError(f"root: {root} is not a folder (give the course directory, where nbgrader_config.py is)")
    found: list[Exposure] = []
    private = secrets(root)
    for name, what in private.items():
        top = root / name
        if not top.exists():
            continue
        quoted = shlex.quote(str(top))
        recursive = "-R " if top.is_dir() else ""
        others_reach, group_reach = _reachable(top, stat.S_IXOTH, stat.S_IXGRP)
        read = write = group_read = None
        for p in _walk(top):
            try:
                st = p.lstat()
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if read is None and others_reach and st.st_mode & (stat.S_IROTH | (stat.S_IXOTH if is_dir else 0)):
                read = p
            if write is None and others_reach and st.st_mode & stat.S_IWOTH:
                write = p
            if group_read is None and group_reach and st.st_mode & (stat.S_IRGRP | (stat.S_IXGRP if is_dir else 0)):
                group = _group_has_others(st.st_gid, st.st_uid)
                if group:
                    group_read = (p, group)
            if read and write and group_read:
                break
        if read is not None:
            found.append(Exposure(read, name, "readable by every user of this machine",
                                  f"chmod {recursive}o-rwx {quoted}", what))
        if write is not None:
            found.append(Exposure(write, name, "writable by every user of this machine",
                                  f"chmod {recursive}o-rwx {quoted}", what))
        if group_read is not None:
            found.append(Exposure(group_read[0], name, f"readable by the members of group {group_read[1]}",
                                  f"chmod {recursive}g-rwx {quoted}", what))
    return found


def report(root: str | os.PathLike, found: list[Exposure]) -> str:
    if not found:
        return f"course folder {root}: solutions, gradebook, submissions and feedback are private to their owner."
    lines = [f"STUDENTS CAN READ OR CHANGE THE COURSE FOLDER {root}:"]
    lines += [f"  - {e}" for e in found]
    lines.append("Fix (as the instructor, from anywhere):")
    for fix in dict.fromkeys(e.fix for e in found):
        lines.append(f"  {fix}")
    lines.append("Keep it fixed: `umask 077` before nbgrader collect/autograde; or close your home folder with "
                 "`chmod 700 ~` when nothing in it must be shared.")
    return "\n".join(lines)


def warn_if_exposed(root: str | os.PathLike, stream=None) -> list[Exposure]:
    """For the grading commands: warn loudly on stderr, with the exact chmod, when the course is exposed (grading
    goes on: the report repeats it)."""
    found = check_course(root)
    if found:
        print("WARNING: " + report(root, found), file=stream or sys.stderr, flush=True)
    return found


def fix(found: list[Exposure]) -> list[str]:
    """Apply the fixes (what --fix does); returns the commands run."""
    done = []
    for command in dict.fromkeys(e.fix for e in found):
        argv = shlex.split(command)
        mode, target = argv[-2], Path(argv[-1])
        who, perms = mode.split("-")
        mask = 0
        for w in who:
            for p in perms:
                mask |= {"o": {"r": stat.S_IROTH, "w": stat.S_IWOTH, "x": stat.S_IXOTH},
                         "g": {"r": stat.S_IRGRP, "w": stat.S_IWGRP, "x": stat.S_IXGRP}}[w][p]
        for p in _walk(target):
            if not p.is_symlink():
                p.chmod(p.stat().st_mode & ~mask & 0o7777)
        done.append(command)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbgrader_sandbox.course_check",
                                     description="Check that students cannot read or change the course folder's "
                                                 "solutions, gradebook, submissions and feedback.")
    parser.add_argument("root", nargs="?", default=".", help="the course directory (default: the current folder)")
    parser.add_argument("--fix", action="store_true", help="run the chmod commands that close what is exposed")
    args = parser.parse_args(argv)
    try:
        found = check_course(args.root)
    except ValueError as e:
        parser.error(str(e))
    print(report(Path(args.root).resolve(), found))
    if found and args.fix:
        for command in fix(found):
            print(f"ran: {command}")
        found = check_course(args.root)
        print(report(Path(args.root).resolve(), found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
