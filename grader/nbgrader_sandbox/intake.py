"""Taking submissions in safely, and handing what grading wrote back to the course's owner.

Both are nbgrader's own hooks, set in ``nbgrader_config.py`` for ``nbgrader autograde``, the formgrader's autograde
button and ``python -m nbgrader_sandbox autograde`` alike::

    c.Autograde.pre_convert_hook = "nbgrader_sandbox.intake.pre_autograde"
    c.Autograde.post_convert_hook = "nbgrader_sandbox.intake.post_autograde"

Before nbgrader reads a submission (``submitted/<student>/<assignment>/``), :func:`pre_autograde` moves every entry
that is not a plain regular file (symbolic links, FIFOs, sockets, devices), and files past the caps on size and count,
into ``submitted/<student>/.refused-<assignment>/``: never followed, never opened, never deleted. A notebook refused
that way is replaced by an empty notebook that says why, so the student is still graded (0 for that notebook, with
the reason in their feedback) and the class goes on. What was refused is written to ``intake.json`` beside it, which
the integrity report reads. A submission that cannot be checked this way (nbgrader would only log the hook's error
and go on, copying what its links point to) is moved aside whole and not graded; nbgrader then fails that student
alone and grades the others.

After a submission is graded as root, :func:`post_autograde` gives ``autograded/<student>/<assignment>/``, the
gradebook and the course's secret to the course folder's owner, so that ``nbgrader generate_feedback`` and
``nbgrader export`` work for the instructor afterwards without root.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import stat
import tempfile
import time

from .layout import SECRET_FILE

MAX_FILES = 200
MAX_FILE_BYTES = 64 * 1024**2
MAX_TOTAL_BYTES = 256 * 1024**2
REFUSED_PREFIX = ".refused-"


def _empty_notebook(why: str) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{
        "cell_type": "markdown", "id": "nbgrader-sandbox-intake", "metadata": {},
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

    def fail(error: OSError) -> None:  # a folder os.walk cannot list is not skipped quietly: intake fails
        raise error

    _open_up(folder)
    for root, dirs, names in os.walk(folder, followlinks=False, onerror=fail):
        dirs.sort()
        for d in list(dirs):
            path = os.path.join(root, d)
            if os.path.islink(path):
                refuse(path, "a symbolic link")
                dirs.remove(d)
            else:
                _open_up(path)
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
        _record(quarantine, refused)
    return refused


def _open_up(path: str) -> None:
    """Give the grader (the folder's owner, after nbgrader collect) read, write and search on a submitted folder.

    Collect keeps the modes the student gave: in a folder left without write permission, nothing could be moved aside
    by an instructor without root, and nbgrader would then copy what a link there points to (``/dev/zero`` included).
    """
    mode = os.lstat(path).st_mode
    if stat.S_ISDIR(mode) and mode & 0o700 != 0o700:
        os.chmod(path, stat.S_IMODE(mode) | 0o700)


def _set_aside_whole(folder: str) -> str:
    """Move the whole submission folder aside (one rename of a short path); return where it went, relative to the
    student's folder. Raises OSError when even that is impossible."""
    parent, assignment = os.path.split(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        dest = os.path.join(parent, REFUSED_PREFIX + assignment, f"{stamp}-whole-submission")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.rename(folder, dest)
    except OSError:
        dest = os.path.join(parent, f"{REFUSED_PREFIX}{assignment}-{stamp}-whole-submission")
        os.rename(folder, dest)
    return os.path.relpath(dest, parent)


def _layout_of(folder: str):
    """The course layout of ``<root>/<step>/<student>/<assignment>``: nbgrader's CourseDirectory as ``<root>``'s
    nbgrader_config.py sets it, nbgrader's defaults where there is none."""
    from .layout import CourseLayout, for_course

    root = os.path.dirname(os.path.dirname(os.path.dirname(folder)))
    try:
        return for_course(root)
    except ValueError:
        return CourseLayout(root)


def pre_autograde(assignment: str, student: str, notebooks: list[str]) -> None:
    """nbgrader's pre_convert_hook for autograde: take the submission in (see the module's docstring)."""
    if not notebooks:
        return
    folder = os.path.dirname(os.path.abspath(notebooks[0]))
    layout = _layout_of(folder)
    # nbgrader passes its --student and --assignment options (often "*"): the folder says whose submission it is
    if os.path.normpath(layout.folder("submitted")) != os.path.normpath(os.path.dirname(os.path.dirname(folder))):
        return  # not a submission (nbgrader autograde also reads autograded/ when it re-runs): nothing to take in
    _warn_if_exposed(layout.root)
    try:
        take_in(folder, notebooks)
    except Exception as e:  # noqa: BLE001 - nbgrader would log it at info level and grade the folder as it is
        # Deny by default: a submission that could not be taken in is not read at all. The whole folder is moved
        # aside, and the list nbgrader passed (the very list it goes on to convert) is emptied: nbgrader then fails
        # this student alone ("No notebooks found"), grades the others, and exits with an error naming the student.
        notebooks.clear()
        student_dir, assignment_id = os.path.split(folder)
        student_id = os.path.basename(student_dir)
        try:
            aside = _set_aside_whole(folder)
        except OSError as again:
            # nbgrader would copy the folder's files, following links: stop the run rather than that
            raise SystemExit(f"nbgrader-sandbox intake: {folder} could not be checked ({_reason(e, folder)}) "
                             f"nor moved aside ({_reason(again, folder)}); nothing was graded after it. Make the "
                             f"folder writable by you, or move it away, and grade again.") from e
        why = f"intake failed ({_reason(e, folder)}), so nothing of it was read or run"
        _log().error("%s/%s: %s; it is kept whole at %s. Fix the cause, move it back to %s and grade this student "
                     "again: nbgrader autograde %s --student %s --force", student_id, assignment_id, why,
                     os.path.join(student_dir, aside), folder, assignment_id, student_id)
        _record(os.path.join(student_dir, REFUSED_PREFIX + assignment_id),
                [{"file": "the whole submission", "why": why, "kept_at": aside}])


def _reason(error: Exception, folder: str) -> str:
    """An error in a line: OSError's text and the file it names, relative to the submission and shortened (the
    file may be a path of thousands of characters)."""
    if isinstance(error, OSError) and error.strerror:
        name = os.path.relpath(error.filename, folder) if isinstance(error.filename, str) else ""
        if len(name) > 100:
            name = name[:48] + "..." + name[-48:]
        return f"{type(error).__name__}: {error.strerror}" + (f": {name}" if name else "")
    return f"{type(error).__name__}: {str(error)[:200]}"


def _log():
    """nbgrader's own log (the running application's), so the error shows where the instructor looks."""
    from traitlets.config import Application

    return Application.instance().log if Application.initialized() else logging.getLogger(__name__)


def _record(quarantine: str, refused: list[dict]) -> None:
    """Add to intake.json, which the integrity report reads (a regrade adds; it never writes over)."""
    record = os.path.join(quarantine, "intake.json")
    try:
        os.makedirs(quarantine, exist_ok=True)
        with open(record) as f:
            earlier = json.load(f)
    except (OSError, ValueError):
        earlier = []
    try:
        with open(record, "w") as f:
            json.dump(earlier + refused, f, indent=1)
    except OSError as e:
        _log().error("could not write %s: %s", record, e)


_checked: set = set()


def _warn_if_exposed(root: str) -> None:
    """Once per grading process: say loudly, with the exact chmod, when other users could read the course folder
    (student code cannot, in its sandbox; a student with a shell on the same machine could)."""
    if root in _checked:
        return
    _checked.add(root)
    from .course_check import warn_if_exposed

    warn_if_exposed(root)


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
    # notebooks are <root>/<submitted>/<student>/<assignment>/<name>.ipynb
    folder = os.path.dirname(os.path.abspath(notebooks[0]))
    assignment_id = os.path.basename(folder)
    student_dir = os.path.dirname(folder)
    student_id = os.path.basename(student_dir)
    layout = _layout_of(folder)
    root = layout.root
    graded = layout.folder("autograded")
    gradebook = layout.gradebook or os.path.join(root, "gradebook.db")
    give_back(root, folders=[graded, os.path.join(graded, student_id), gradebook, gradebook + "-journal",
                             layout.secret],
              trees=[os.path.join(graded, student_id, assignment_id),
                     os.path.join(student_dir, REFUSED_PREFIX + assignment_id)])


# --- the course's secret --------------------------------------------------------------------------------------------


def course_secret(db_url: str) -> bytes:
    """The course's secret (32 random bytes), from which each submission's hidden cases are keyed
    (:func:`hidden_cases_key`); made on first use.

    It lives beside the gradebook (a SQLite file in the course folder), readable by its owner only, and never enters
    a sandbox nor the checker: knowing the course's code and this package's does not tell the hidden inputs.
    """
    folder = os.getcwd()
    if db_url.startswith("sqlite:///"):
        folder = os.path.dirname(os.path.abspath(db_url[len("sqlite:///"):].split("?", 1)[0]))
    path = os.path.join(folder, SECRET_FILE)
    if not os.path.lexists(path):
        # written whole, then linked into place: a grader running beside this one never reads a half-written file
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".grading-secret-")
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


def submission_digest(folder: str) -> str:
    """SHA-256 of everything a submission folder holds: each entry's path in it, its kind, and a regular file's bytes.

    Any change a student makes to carry something into a later grading (a table in a cell, in a data file, anywhere
    in the folder) changes it, and nothing is left out for being past a cap; grading the same submission again gives
    the same digest. Links, FIFOs and devices are never followed nor opened (their kind alone counts). The submission
    time is not part of it as such: the student sets it (timestamp.txt is hashed like any other file).
    """
    if not os.path.isdir(folder) or os.path.islink(folder):
        raise ValueError(f"folder: expected a submission's folder; got {folder!r:.200}")
    digest = hashlib.sha256(b"nbgrader-sandbox submission v1\0")

    def add(*parts: bytes) -> None:  # length-prefixed: no two different folders hash alike
        for part in parts:
            digest.update(len(part).to_bytes(8, "little") + part)

    def fail(error: OSError) -> None:  # a folder that cannot be listed is not skipped quietly
        raise error

    for root, dirs, names in os.walk(folder, followlinks=False, onerror=fail):
        dirs.sort()
        for name in sorted(dirs + names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder).encode("utf-8", "surrogateescape")
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                add(b"folder", rel)
            elif not stat.S_ISREG(st.st_mode):
                add(_kind(st.st_mode).encode(), rel)
            else:
                add(b"file", rel, _file_sha256(path))
    return digest.hexdigest()


def _file_sha256(path: str) -> bytes:
    """SHA-256 of a regular file's bytes, read in chunks; never follows a link nor blocks on a FIFO."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return b"not a regular file"
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


def hidden_cases_key(secret: bytes, student: str, assignment: str, notebook: str, digest: str) -> bytes:
    """The key one submission's hidden cases are drawn from: HMAC-SHA256 of the course's secret over the student,
    the assignment, the notebook and the submission's content (:func:`submission_digest`).

    Only this key reaches the checker (lnkit.checks.set_hidden_secret); the course's secret never leaves the grader.
    Inputs learnt from one grading fit no other student and no other submission; the same submission graded again
    gets the same inputs.
    """
    if not isinstance(secret, bytes) or len(secret) < 16:
        raise ValueError("secret: expected the course's secret, at least 16 bytes")
    for name, value in (("student", student), ("assignment", assignment), ("notebook", notebook), ("digest", digest)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name}: expected a non-empty str; got {value!r:.80}")
    message = json.dumps(["nbgrader-sandbox hidden cases v1", student, assignment, notebook, digest]).encode()
    return hmac.new(secret, message, hashlib.sha256).digest()
