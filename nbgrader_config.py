"""nbgrader's configuration: the repository root is the course directory.

Instructor sources (solutions, hidden tests, points) live in solutions/<assignment>/; the student versions that
`nbgrader generate_assignment <assignment>` makes from them go to exercises/<assignment>/ and are committed.
nbgrader's working folders (submitted/, autograded/, feedback/) and gradebook.db are git-ignored.

The exchange folder (release_assignment, fetch_assignment, submit, collect) is machine-specific: set it on the
command line (`--Exchange.root=/srv/nbgrader/exchange`, nbgrader's default) or in a nbgrader_config.py of your own
in ~/.jupyter.

Autograding (`nbgrader autograde`, or `python -m lnkit.grading autograde <assignment>` for a whole class in parallel)
decides every test cell outside the student's kernel (lnkit.grading): the settings below are the instructor's knobs.
"""

import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

ROOT = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = ROOT
c.CourseDirectory.course_id = "layernorm"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
# Several autograding processes share the gradebook: wait up to a minute for SQLite's lock instead of failing.
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(ROOT, "gradebook.db") + "?timeout=60"

# --- autograding -------------------------------------------------------------------------------------------------
# nbgrader's own list, with Execute replaced by SafeExecute (an isolated kernel; a dead or stuck kernel ends the
# in-kernel run instead of leaving the submission ungraded) and CheckOutsideKernel placed before SaveAutoGrades
# (each test cell's outputs become the verdict of the check run outside the student's kernel).
c.Autograde.autograde_preprocessors = [
    "lnkit.grading.preprocessors.SafeExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "lnkit.grading.preprocessors.CheckOutsideKernel",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "lnkit.grading.preprocessors.DeduplicateIdsFully",  # nbgrader's, without its crash on a duplicated cell
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# A deleted test cell is put back (and graded) rather than silently missing from the submission's score.
c.OverwriteCells.add_missing_cells = True

# Limits. In the kernel (which only produces what students see in their feedback): seconds per cell.
c.Execute.timeout = int(os.environ.get("LNKIT_KERNEL_CELL_SECONDS", 60))
# Out of the kernel (the verdicts that count): per call of a student function, the time to run the notebook's code
# first, and the memory of the student's process. Student code runs as this user when grading as root.
c.CheckOutsideKernel.call_seconds = float(os.environ.get("LNKIT_CALL_SECONDS", 10))
c.CheckOutsideKernel.start_seconds = float(os.environ.get("LNKIT_START_SECONDS", 30))
c.CheckOutsideKernel.memory_bytes = 4 * 1024**3
c.CheckOutsideKernel.user = "nobody"
c.IsolatedKernelManager.user = "nobody"
c.IsolatedKernelManager.memory_bytes = 4 * 1024**3
