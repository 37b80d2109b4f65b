"""``nbgrader collect`` with a submission time the student cannot set.

nbgrader takes a submission's time from ``timestamp.txt``, a file that ``nbgrader submit`` writes as the student,
into a folder the student owns: anyone can write an earlier date there (or in the folder's name, which collect uses
to choose among a student's submissions) and escape the late penalty. This collect, set in the course's
``nbgrader_config.py`` (``nbgrader collect`` and the formgrader's collect button both make their collector from
``ExchangeFactory``)::

    c.ExchangeFactory.collect = "nbgrader_sandbox.collect.TrustedTimeCollect"

times each inbound submission by the newest **inode change time** (``st_ctime``) of its folder and of everything in
it, read without following links. The kernel sets a ctime to its own clock on every change (a write, a chmod, a
rename, a link) and no user can set it back, so it is at least the moment the student last changed the submission.
That time chooses which of a student's submissions is collected (and which is the last before the due date), and it
is written to ``submitted/<student>/<assignment>/timestamp.txt`` after the copy, replacing whatever the student put
there: the time that ``nbgrader autograde``, the gradebook and ``AssignLatePenalties`` then use. What the student
claimed (their ``timestamp.txt`` and the time in the folder's name) is kept beside it in
``submitted/<student>/.collected-<assignment>.json``, outside the submission (intake and grading never read it; the
student cannot place it), and the integrity report flags a claim that differs from the trusted time by more than
:data:`TOLERANCE_SECONDS`.

The copy itself never follows a link: links are copied as links, for intake to move aside and report (stock collect
copies what they point to, a file of the instructor's included), and FIFOs, sockets and devices are not copied.
A submission whose folder is not a plain folder on the exchange's own filesystem (a link, a mount point), cannot be
read, or is owned by someone other than the student it names (inbound lets every student create a folder named for
another; stock collect only warns) or the one collecting, is not collected: the log names it, and the others are
collected (``c.ExchangeCollect.check_owner = False`` lifts the owner rule, as it lifts nbgrader's warning).

What this can and cannot guarantee is said in README.md ("Grading that can be trusted") and book/instructors.md.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import stat
import tempfile

from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.utils import ignore_patterns, parse_utc

#: a claimed time this far from the trusted one (seconds) is flagged in the integrity report; a student's clock and
#: the exchange's may differ by a little, and submit writes timestamp.txt a moment before the copy ends
TOLERANCE_SECONDS = 60
#: entries of one inbound submission that collect will look at (more: not collected, and said)
MAX_ENTRIES = 10_000
RECORD_PREFIX = ".collected-"
TIMESTAMP_FILE = "timestamp.txt"


def record_path(submitted_student_dir: str, assignment: str) -> str:
    """Where collect keeps what it measured and what the student claimed, for one student and assignment."""
    return os.path.join(submitted_student_dir, f"{RECORD_PREFIX}{assignment}.json")


def trusted_time(folder: str) -> datetime.datetime:
    """The newest inode change time of folder and of everything in it, never following a link, in naive UTC (as
    nbgrader's gradebook keeps times). Raises ValueError when folder is not a plain folder, or holds a mount point
    or more than :data:`MAX_ENTRIES` entries; OSError when it cannot be read."""
    top = os.lstat(folder)
    if not stat.S_ISDIR(top.st_mode):
        raise ValueError("not a folder (a link, or a file)")
    newest, seen, stack = top.st_ctime_ns, 0, [folder]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                seen += 1
                if seen > MAX_ENTRIES:
                    raise ValueError(f"more than {MAX_ENTRIES} entries")
                st = entry.stat(follow_symlinks=False)
                if st.st_dev != top.st_dev:  # another filesystem mounted there tells whatever times it likes
                    raise ValueError(f"{os.path.relpath(entry.path, folder)} is a mount point")
                newest = max(newest, st.st_ctime_ns)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return datetime.datetime.fromtimestamp(newest / 1e9, datetime.timezone.utc).replace(tzinfo=None)


def format_time(when: datetime.datetime) -> str:
    """A naive UTC time as nbgrader submit writes it (and parse_utc reads it)."""
    return when.strftime("%Y-%m-%d %H:%M:%S.%f") + " UTC"


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _read_claim(folder: str) -> str | None:
    """The student's timestamp.txt, read as data: a regular file only, never a link or a FIFO, 200 bytes at most."""
    try:
        fd = os.open(os.path.join(folder, TIMESTAMP_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return fh.read(200).decode("utf-8", "replace").strip()


def claim_differs(record: dict, tolerance: float = TOLERANCE_SECONDS) -> list[str]:
    """What the student claimed that differs from the trusted time by more than tolerance seconds, in words."""
    trusted = parse_utc(record["trusted"])
    found = []
    for what, key in (("timestamp.txt says", "claimed"), ("the exchange folder's name says", "name_time")):
        claim = record.get(key)
        if claim is None:
            continue
        try:
            delta = (parse_utc(claim) - trusted).total_seconds()
        except (ValueError, OverflowError, TypeError):
            found.append(f"{what} {claim!r}, which is not a time")
            continue
        if abs(delta) > tolerance:
            found.append(f"{what} {claim}, {abs(delta):.0f} s {'earlier' if delta < 0 else 'later'} than the "
                         f"submission changed last on the exchange ({record['trusted']})")
    return found


class TrustedTimeCollect(ExchangeCollect):
    """nbgrader's collect, timing each submission by what the exchange's filesystem saw (see the module's docstring)."""

    def _path_to_record(self, path):
        try:
            record = super()._path_to_record(path)
        except (ValueError, OverflowError):  # a name whose time does not parse: one bad entry must not stop collect
            name = os.path.basename(path)
            record = {"username": name.split("+", 1)[0], "filename": name, "timestamp": None}
        record["name_time"] = record["timestamp"]
        try:
            record["timestamp"] = trusted_time(path)
            owner = os.lstat(path).st_uid
            # inbound lets every student create a folder named for another: stock collect only warns. Deny: only
            # the student named, or the one collecting (fake students, in tests and demonstrations), may own it.
            if self.check_owner and owner != os.geteuid() and _user_name(owner) != record["username"]:
                raise ValueError(f"owned by {_user_name(owner)}, not by the student it names")
        except (OSError, ValueError) as e:
            record["timestamp"] = datetime.datetime.min
            record["refused"] = f"{type(e).__name__}: {e}"
        return record

    def _sort_by_timestamp(self, records):
        # by the trusted time; a submission that cannot be collected is chosen only when the student has no other,
        # and then dropped in init_src with an error naming it
        usable = [r for r in records if "refused" not in r]
        return super()._sort_by_timestamp(usable or records)

    def init_src(self):
        super().init_src()
        kept = []
        for rec in self.src_records:
            if "refused" in rec:
                self.log.error("Not collected: %s (%s). Only a plain folder that collect can read, on the "
                               "exchange's filesystem, is collected.", rec["filename"], rec["refused"])
            else:
                kept.append(rec)
        self.src_records = kept
        self._records = {os.path.join(self.inbound_path, rec["filename"]): rec for rec in kept}

    def do_copy(self, src, dest, log=None):
        record = self._records.get(src)
        if record is None:  # not one of the submissions chosen in init_src: nbgrader's own copy
            return super().do_copy(src, dest, log)
        dir_size = self.get_size(src)
        if dir_size > 1000 * self.coursedir.max_dir_size:
            raise RuntimeError(f"Directory size is too big. Size is {dir_size}, maximum size is "
                               f"{1000 * self.coursedir.max_dir_size}")
        nbgrader_ignore = ignore_patterns(exclude=self.coursedir.ignore, include=self.coursedir.include,
                                          max_file_size=self.coursedir.max_file_size, log=self.log)
        skipped = []

        def ignore(directory, names):
            ignored = set(nbgrader_ignore(directory, names))
            for name in names:
                mode = os.lstat(os.path.join(directory, name)).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                    ignored.add(name)  # a FIFO would block the copy, a socket or device fail it
                    skipped.append(os.path.relpath(os.path.join(directory, name), src))
            return ignored

        # links stay links: intake moves them aside, never followed (stock collect copies what they point to)
        shutil.copytree(src, dest, symlinks=True, ignore=ignore)
        for name in skipped:
            self.log.warning("Not collected from %s: %s (not a regular file)", src, name)
        # measured again after the copy: any change made before the copy read the files is in this time
        when = max(record["timestamp"], trusted_time(src))
        stamp = os.path.join(dest, TIMESTAMP_FILE)
        if os.path.lexists(stamp):
            os.unlink(stamp)  # the student's copy, perhaps a link: never written through
        fd = os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(format_time(when))
        kept = {"student": record["username"], "assignment": self.coursedir.assignment_id,
                "inbound": record["filename"], "trusted": format_time(when), "claimed": _read_claim(src),
                "name_time": format_time(record["name_time"]) if record["name_time"] else None,
                "owner_uid": os.lstat(src).st_uid,
                "collected_at": format_time(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)),
                "not_copied": skipped[:100]}
        kept["differs"] = claim_differs(kept)  # for the integrity report, which never imports nbgrader
        student_dir = os.path.dirname(dest)
        fd, tmp = tempfile.mkstemp(dir=student_dir, prefix=".collected-tmp-")
        with os.fdopen(fd, "w") as fh:
            json.dump(kept, fh, indent=1)
        os.replace(tmp, record_path(student_dir, self.coursedir.assignment_id))
        self.log.info("Submission time of %s %s: %s (by the exchange; timestamp.txt said %s)", record["username"],
                      self.coursedir.assignment_id, kept["trusted"], kept["claimed"])
