"""Taking submissions in safely, and handing what grading wrote back to the course's owner.

Both are nbgrader's own hooks, set in ``nbgrader_config.py`` for ``nbgrader autograde``, the formgrader's autograde
button and ``python -m lnkit.grading autograde`` alike::

    c.Autograde.pre_convert_hook = "lnkit.grading.intake.pre_autograde"
    c.Autograde.post_convert_hook = "lnkit.grading.intake.post_autograde"

Before nbgrader reads a submission (``submitted/<student>/<assignment>/``), :func:`pre_autograde` moves every entry
that is not a plain regular file (symbolic links, FIFOs, sockets, devices), and files past the caps on size and count,
into ``submitted/<student>/.refused-<assignment>/``: never followed, never opened, never deleted. A notebook refused
that way is replaced by an empty notebook that says why, so the student is still graded (0 for that notebook, with
the reason in their feedback) and the class goes on. What was refused is written to ``intake.json`` beside it, which
the integrity report reads.

After a submission is graded as root, :func:`post_autograde` gives ``autograded/<student>/<assignment>/``, the
gradebook and the course's secret to the course folder's owner, so that ``nbgrader generate_feedback`` and
``nbgrader export`` work for the instructor afterwards without root.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time

MAX_FILES = 200
MAX_FILE_BYTES = 64 * 1024**2
MAX_TOTAL_BYTES = 256 * 1024**2
REFUSED_PREFIX = ".refused-"


def _empty_notebook(why: str) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{
        "cell_type": "markdown", "id": "lnkit-intake", "metadata": {},
        "source": f"**This notebook was not graded as submitted:** {why}. Only plain files are accepted; hand in "
                  f"the notebook itself, not a link or a special file."}]}


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def take_in(folder: str, notebooks: list[str] | None = None) -> list[dict]:
    """Make folder hold only regular files within the caps; return what was moved aside, and why.

    ``notebooks`` (nbgrader's list of the submission's notebooks) is kept valid: a refused notebook is replaced in
    place by an empty notebook that says why.
    """
    folder = os.path.abspath(folder)
    parent, assignment = os.path.split(folder)
    quarantine = os.path.join(parent, REFUSED_PREFIX + assignment)
    refused: list[dict] = []
    count = total = 0

    def refuse(path: str, why: str) -> None:
        rel = os.path.relpath(path, folder)
        dest = os.path.join(quarantine, f"{time.strftime('%Y%m%d-%H%M%S')}-{len(refused)}", rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.rename(path, dest)  # a rename never follows a link nor opens a FIFO
        refused.append({"file": rel, "why": why, "kept_at": os.path.relpath(dest, parent)})

    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs.sort()
        for d in list(dirs):
            path = os.path.join(root, d)
            if os.path.islink(path):
                refuse(path, "a symbolic link")
                dirs.remove(d)
        for name in sorted(names):
            path = os.path.join(root, name)
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                refuse(path, _kind(st.st_mode))
            elif st.st_size > MAX_FILE_BYTES:
                refuse(path, f"larger than {MAX_FILE_BYTES // 1024**2} MiB")
            elif count >= MAX_FILES:
                refuse(path, f"more than {MAX_FILES} files")
            elif total + st.st_size > MAX_TOTAL_BYTES:
                refuse(path, f"the files together exceed {MAX_TOTAL_BYTES // 1024**2} MiB")
            else:
                count += 1
                total += st.st_size
    for item in refused:
        path = os.path.join(folder, item["file"])
        if path.endswith(".ipynb") and notebooks is not None and path in notebooks:
            with open(path, "x") as f:
                json.dump(_empty_notebook(f"{item['file']} was {item['why']}"), f)
    if refused:  # added to what earlier gradings of this submission refused (a regrade finds nothing new)
        record = os.path.join(quarantine, "intake.json")
        try:
            with open(record) as f:
                earlier = json.load(f)
        except (OSError, ValueError):
            earlier = []
        with open(record, "w") as f:
            json.dump(earlier + refused, f, indent=1)
    return refused


def pre_autograde(assignment: str, student: str, notebooks: list[str]) -> None:
    """nbgrader's pre_convert_hook for autograde: take the submission in (see the module's docstring)."""
    if not notebooks:
        return
    folder = os.path.dirname(os.path.abspath(notebooks[0]))
    if os.path.basename(os.path.dirname(os.path.dirname(folder))) != "submitted":
        return  # not a submission (nbgrader autograde also reads autograded/ when it re-runs): nothing to take in
    _warn_if_exposed(os.path.dirname(os.path.dirname(os.path.dirname(folder))))
    take_in(folder, notebooks)


_checked: set = set()


def _warn_if_exposed(root: str) -> None:
    """Once per grading process: say loudly, with the exact chmod, when other users could read the course folder
    (student code cannot, in its sandbox; a student with a shell on the same machine could)."""
    if root in _checked:
        return
    _checked.add(root)
    from .course_check import require_private_course

    require_private_course(root, refuse=False)


def _chown(path: str, uid: int, gid: int, recursive: bool) -> None:
    if not os.path.lexists(path):
        return
    os.lchown(path, uid, gid)
    if recursive:
        for root, dirs, files in os.walk(path, followlinks=False):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, gid)


def give_back(course_root: str, folders: list[str] = (), trees: list[str] = ()) -> None:
    """As root: hand folders (themselves) and trees (with their contents) to the owner of course_root."""
    if os.geteuid() != 0:
        return
    st = os.stat(course_root)
    for path in folders:
        _chown(path, st.st_uid, st.st_gid, recursive=False)
    for path in trees:
        _chown(path, st.st_uid, st.st_gid, recursive=True)


def post_autograde(assignment: str, student: str, notebooks: list[str]) -> None:
    """nbgrader's post_convert_hook for autograde: as root, the files grading wrote go back to the course's owner."""
    if os.geteuid() != 0 or not notebooks:
        return
    # notebooks are <root>/submitted/<student>/<assignment>/<name>.ipynb
    folder = os.path.dirname(os.path.abspath(notebooks[0]))
    assignment_id = os.path.basename(folder)
    student_dir = os.path.dirname(folder)
    student_id = os.path.basename(student_dir)
    root = os.path.dirname(os.path.dirname(student_dir))
    graded = os.path.join(root, "autograded")
    give_back(root, folders=[graded, os.path.join(graded, student_id),
                             *[os.path.join(root, f) for f in ("gradebook.db", "gradebook.db-journal", SECRET_FILE)]],
              trees=[os.path.join(graded, student_id, assignment_id),
                     os.path.join(student_dir, REFUSED_PREFIX + assignment_id)])


# --- the course's secret --------------------------------------------------------------------------------------------

SECRET_FILE = ".lnkit-secret"


def course_secret(db_url: str) -> bytes:
    """The course's secret (32 random bytes), the seed of every graded hidden case; made on first use.

    It lives beside the gradebook (a SQLite file in the course folder), readable by its owner only, and never enters
    a sandbox: knowing the repository and lnkit does not tell the hidden inputs.
    """
    folder = os.getcwd()
    if db_url.startswith("sqlite:///"):
        folder = os.path.dirname(os.path.abspath(db_url[len("sqlite:///"):].split("?", 1)[0]))
    path = os.path.join(folder, SECRET_FILE)
    if not os.path.lexists(path):
        # written whole, then linked into place: a grader running beside this one never reads a half-written file
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".lnkit-secret-")
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        if os.geteuid() == 0:
            st = os.stat(folder)
            os.chown(tmp, st.st_uid, st.st_gid)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as f:
        text = f.read().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 16:
        raise RuntimeError(f"{path}: not a secret of at least 16 bytes in hex; delete it to make a new one")
    return secret
