"""Where a course keeps what: nbgrader's CourseDirectory settings, read once, for every path the grader joins.

nbgrader's defaults are ``source/``, ``release/``, ``submitted/``, ``autograded/``, ``feedback/`` and ``gradebook.db``
in the course root; a course may rename any of them in its ``nbgrader_config.py`` (lnkit's releases to
``exercises/``), and the grader follows.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass

# The course's secret (see intake.course_secret): a file beside the gradebook, readable by its owner only.
SECRET_FILE = ".grading-secret"


@dataclass(frozen=True)
class CourseLayout:
    root: str
    source: str = "source"
    release: str = "release"
    submitted: str = "submitted"
    autograded: str = "autograded"
    feedback: str = "feedback"
    gradebook: str = ""  # the SQLite file of the gradebook ("" when it is not a local SQLite database)

    def folder(self, step: str, student: str = "", assignment: str = "") -> str:
        """``root/<step's folder>[/student][/assignment]``, as nbgrader's CourseDirectory.format_path lays it out
        (the source and release folders have no student level)."""
        parts = [self.root, getattr(self, step)]
        if step not in ("source", "release") and student:
            parts.append(student)
        if assignment:
            parts.append(assignment)
        return os.path.join(*parts)

    @property
    def secret(self) -> str:
        """The course's secret, beside the gradebook."""
        return os.path.join(os.path.dirname(self.gradebook or os.path.join(self.root, "gradebook.db")), SECRET_FILE)

    def notebook(self, step: str, student: str, assignment: str, name: str) -> str:
        return os.path.join(self.folder(step, student, assignment), f"{name}.ipynb")


def _sqlite_path(db_url: str, root: str) -> str:
    url = urllib.parse.urlsplit(db_url)
    if url.scheme != "sqlite" or not url.path:
        return ""
    path = url.path[1:] if url.path.startswith("//") else url.path.lstrip("/")
    return path if os.path.isabs(path) else os.path.join(root, path)


# The folders' steps: CourseDirectory.<step>_directory, whose nbgrader 0.9.6 default is the step's name
# (tests/unit/nbgrader_sandbox/test_layout.py compares every layout read here with nbgrader's own CourseDirectory):
# read without importing nbgrader, whose import takes seconds.
STEPS = ("source", "release", "submitted", "autograded", "feedback")


def for_course(course_root: str) -> CourseLayout:
    """The layout the course's ``nbgrader_config.py`` sets, as nbgrader's CourseDirectory reads it."""
    from traitlets.config.loader import PyFileConfigLoader

    course_root = os.path.abspath(course_root)
    if not os.path.exists(os.path.join(course_root, "nbgrader_config.py")):
        raise ValueError(f"course: {course_root} has no nbgrader_config.py; run this from the course directory")
    cd = PyFileConfigLoader("nbgrader_config.py", path=course_root).load_config().CourseDirectory
    root = os.path.abspath(cd.get("root", course_root))
    db_url = cd.get("db_url") or "sqlite:///" + os.path.join(root, "gradebook.db")
    folders = {step: cd.get(f"{step}_directory", step) for step in STEPS}
    return CourseLayout(root=root, gradebook=_sqlite_path(db_url, root), **folders)
