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

# --- generating the release -------------------------------------------------------------------------------------
# nbgrader's own list, with one check added: a test cell the outside checker could not run (IPython magics, shell
# commands, display) is refused at generate_assignment time, naming the cell, instead of failing for every student.
c.GenerateAssignment.preprocessors = [
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.InstantiateTests",
    "lnkit.grading.preprocessors.RunnableOutsideKernel",
    "nbgrader.preprocessors.LockCells",
    "nbgrader.preprocessors.ClearSolutions",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.CheckCellMetadata",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.SaveCells",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# --- collecting --------------------------------------------------------------------------------------------------
# nbgrader collect and the formgrader's collect button: the submission time is the exchange's (the newest inode
# change time of what the student handed in), never the student's timestamp.txt; links are not followed. Collect
# from this folder (or with this line in your own configuration): a stock collect keeps the student's claim.
c.ExchangeFactory.collect = "lnkit.grading.collect.TrustedTimeCollect"

# --- autograding -------------------------------------------------------------------------------------------------
# Student code runs only in a bubblewrap sandbox per student (lnkit.grading.sandbox): the kernel nbgrader executes and
# the process whose answers the checks score. nbgrader's own lists of preprocessors, with three replaced:
# SafeExecute (the sandboxed kernel; a dead or stuck kernel ends the in-kernel run instead of leaving the submission
# ungraded), CheckOutsideKernel before SaveAutoGrades (each test cell's outputs become the verdict of the instructor's
# test cell run outside the student's kernel, hidden cases drawn per submission from the course's secret), and
# OverwriteCellsFromSource (metadata and missing cells restored from the instructor's source, never a crash).
c.Autograde.autograde_preprocessors = [
    "lnkit.grading.preprocessors.SafeExecute",
    "lnkit.grading.preprocessors.SafeOutputs",  # outputs no page can run: text, errors, PNG/JPEG/GIF; nothing else
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
    "lnkit.grading.preprocessors.OverwriteCellsFromSource",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# The feedback students get: nbgrader's, without the hidden tests' source (stock nbgrader shows it to everyone).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "lnkit.grading.preprocessors.HiddenTestsOutOfFeedback",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
# Every page nbgrader renders from a student's notebook (the formgrader's Manual Grading page, in the instructor's
# Jupyter origin, and the feedback) shows student content inert: markdown and outputs cleaned against an allow-list
# (lnkit.grading.render), no script output emitted. nbconvert's own sanitize_html alone misses nbgrader's templates'
# markdown cells. The feedback's exporter also drops unsafe outputs again and puts a Content-Security-Policy in the
# page; the formgrader does too where the server loads the lnkit.grading.render extension (the hub's does).
c.HTMLExporter.sanitize_html = True
c.HTMLExporter.preprocessors = ["lnkit.grading.preprocessors.SafeOutputs"]  # for notebooks graded before it
c.HTMLExporter.filters = {"markdown2html": "lnkit.grading.render.markdown2html",
                          "clean_html": "lnkit.grading.render.clean_html"}
c.GenerateFeedback.exporter_class = "lnkit.grading.render.SafeHTMLExporter"
# Before nbgrader reads a submission: only regular files, within caps (the rest is moved aside, never followed).
# After it is graded as root: autograded/, the gradebook and the secret go back to the course folder's owner.
c.Autograde.pre_convert_hook = "lnkit.grading.intake.pre_autograde"
c.Autograde.post_convert_hook = "lnkit.grading.intake.post_autograde"

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
c.SafeExecute.notebook_cpu_seconds = float(os.environ.get("LNKIT_NOTEBOOK_CPU_SECONDS", 300))
c.SafeExecute.notebook_wall_seconds = float(os.environ.get("LNKIT_NOTEBOOK_WALL_SECONDS", 900))
# Out of the kernel (the verdicts that count): CPU seconds per call of a student function, and for running the
# notebook's code first. CPU time, not wall-clock time: a busy machine never changes a grade.
c.CheckOutsideKernel.call_seconds = float(os.environ.get("LNKIT_CALL_SECONDS", 10))
c.CheckOutsideKernel.start_seconds = float(os.environ.get("LNKIT_START_SECONDS", 30))
