"""Where a course keeps what: nbgrader's own CourseDirectory settings, read once, for every path the grader joins.

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


def for_course(course_root: str) -> CourseLayout:
    """The layout the course's ``nbgrader_config.py`` sets (nbgrader's CourseDirectory, as nbgrader reads it)."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    course_root = os.path.abspath(course_root)
    if not os.path.exists(os.path.join(course_root, "nbgrader_config.py")):
        raise ValueError(f"course: {course_root} has no nbgrader_config.py; run this from the course directory")
    config = PyFileConfigLoader("nbgrader_config.py", path=course_root).load_config()
    cd = CourseDirectory(config=config)
    if "root" not in config.CourseDirectory:
        cd.root = course_root
    root = os.path.abspath(cd.root)
    return CourseLayout(root=root, source=cd.source_directory, release=cd.release_directory,
                        submitted=cd.submitted_directory, autograded=cd.autograded_directory,
                        feedback=cd.feedback_directory, gradebook=_sqlite_path(cd.db_url, root))
