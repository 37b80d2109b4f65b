"""nbgrader's configuration: the repository root is the course directory.

Instructor sources (solutions, hidden tests, points) live in solutions/<assignment>/; the student versions that
`nbgrader generate_assignment <assignment>` makes from them go to exercises/<assignment>/ and are committed.
nbgrader's working folders (submitted/, autograded/, feedback/) and gradebook.db are git-ignored.

The exchange folder (release_assignment, fetch_assignment, submit, collect) is machine-specific: set it on the
command line (`--Exchange.root=/srv/nbgrader/exchange`, nbgrader's default) or in a nbgrader_config.py of your own
in ~/.jupyter.

Autograding (`nbgrader autograde`, or `python -m nbgrader_sandbox autograde <assignment>` for a whole class in parallel)
decides every test cell outside the student's kernel (nbgrader_sandbox): the settings below are the instructor's knobs.
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

# --- the grader ------------------------------------------------------------------------------------------------
# nbgrader_sandbox (grader/ of this repository, the distribution nbgrader-sandbox) runs every student's code in a
# bubblewrap sandbox and decides each test cell outside the student's kernel. configure() puts its preprocessors,
# hooks, collect and exporters into nbgrader's lists (grader/nbgrader_sandbox/config.py says what each one does);
# the course, as the grader sees it (lnkit's checks, the helpers they send to the student's side, the package graded
# code never gets, the hidden-case hook), is lnkit.checks.course. Collect from this folder (or with this file in your
# own configuration): a stock collect keeps the student's claimed submission time.
try:
    from nbgrader_sandbox.config import configure
except ImportError:  # a student's install (lnkit[student]) has no grader: Validate works; autograding fails loudly
    c.Autograde.autograde_preprocessors = ["nbgrader_sandbox.preprocessors.SafeExecute"]
else:
    configure(c, course="lnkit.checks.course")

# What graded code may import, per assignment (the kernel also gets ipykernel and lnkit's visible checks; the process
# whose answers are scored never gets lnkit). Chapter 6's notebook builds its measurement with torch.
c.GradingSandbox.default_packages = ["numpy"]
c.GradingSandbox.packages = {"06-pre-post-ln": ["numpy", "torch"]}
c.GradingSandbox.memory_bytes = 4 * 1024**3
# Where no sandbox can be made, grading refuses to run student code; only where every student is trusted:
# c.GradingSandbox.allow_unsandboxed = True

# Limits. In the kernel (which only produces what students see in their feedback): wall-clock seconds per cell.
c.Execute.timeout = int(os.environ.get("LNKIT_KERNEL_CELL_SECONDS", 60))
# the whole in-kernel run (it only makes what the feedback shows): CPU seconds of the kernel's sandbox, and a
# wall-clock backstop that sleeping cells cannot extend; exercise 06, which trains, takes about 25 s
c.GradingSandbox.notebook_cpu_seconds = float(os.environ.get("LNKIT_NOTEBOOK_CPU_SECONDS", 300))
c.GradingSandbox.notebook_wall_seconds = float(os.environ.get("LNKIT_NOTEBOOK_WALL_SECONDS", 900))
# Out of the kernel (the verdicts that count): CPU seconds per call of a student function, and for running the
# notebook's code first. CPU time, not wall-clock time: a busy machine never changes a grade.
c.GradingSandbox.call_seconds = float(os.environ.get("LNKIT_CALL_SECONDS", 10))
c.GradingSandbox.start_seconds = float(os.environ.get("LNKIT_START_SECONDS", 30))
