"""Turn the grader on in a course's ``nbgrader_config.py``: one call, then the course's own settings::

    from nbgrader_sandbox.config import configure
    c = get_config()
    configure(c, course="mycourse.grading")   # or course="" for test cells that are plain asserts
    c.GradingSandbox.default_packages = ["numpy"]

It sets nbgrader's own preprocessor lists with the grader's in their places; every other setting keeps nbgrader's
default or the course's. What each replacement does is said beside it.
"""

from __future__ import annotations

_P = "nbgrader_sandbox.preprocessors."

# nbgrader's list, with one check added: a test cell the outside checker could not run (IPython magics, shell
# commands, display) or a check the course does not register is refused at generate_assignment time, naming the cell.
GENERATE = [
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.InstantiateTests",
    _P + "RunnableOutsideKernel",
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
# nbgrader's lists, with three replaced: SafeExecute (the sandboxed kernel; a dead or stuck kernel ends the in-kernel
# run instead of leaving the submission ungraded), CheckOutsideKernel before SaveAutoGrades (each test cell's outputs
# become the verdict of the instructor's test cell run outside the student's kernel, hidden cases drawn per
# submission from the course's secret), and OverwriteCellsFromSource (metadata and missing cells restored from the
# instructor's source, never a crash).
AUTOGRADE = [
    _P + "SafeExecute",
    _P + "SafeOutputs",  # outputs no page can run: text, errors, PNG/JPEG/GIF; nothing else
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    _P + "CheckOutsideKernel",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
SANITIZE = [
    "nbgrader.preprocessors.ClearOutput",
    _P + "DeduplicateIdsFully",  # nbgrader's, without its crash on a duplicated cell
    "nbgrader.preprocessors.OverwriteKernelspec",
    _P + "OverwriteCellsFromSource",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# The feedback students get: nbgrader's, without the hidden tests' source (stock nbgrader shows it to everyone).
FEEDBACK = [
    "nbgrader.preprocessors.GetGrades",
    _P + "HiddenTestsOutOfFeedback",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]


def configure(c, course: str = "") -> None:
    """Put the grader into nbgrader's configuration ``c``; ``course`` names the course's module (see
    :mod:`nbgrader_sandbox.course`), or is empty for a course whose test cells need no checks of their own."""
    c.GradingSandbox.course = course
    c.GenerateAssignment.preprocessors = list(GENERATE)
    c.Autograde.autograde_preprocessors = list(AUTOGRADE)
    c.Autograde.sanitize_preprocessors = list(SANITIZE)
    c.GenerateFeedback.preprocessors = list(FEEDBACK)
    # Before nbgrader reads a submission: only regular files, within caps (the rest is moved aside, never followed).
    # After it is graded as root: autograded/, the gradebook and the secret go back to the course folder's owner.
    c.Autograde.pre_convert_hook = "nbgrader_sandbox.intake.pre_autograde"
    c.Autograde.post_convert_hook = "nbgrader_sandbox.intake.post_autograde"
    # nbgrader collect and the formgrader's collect button: the submission time is the exchange's (the newest inode
    # change time of what the student handed in), never the student's timestamp.txt; links are not followed.
    c.ExchangeFactory.collect = "nbgrader_sandbox.collect.TrustedTimeCollect"
    # Every page nbgrader renders from a student's notebook (the formgrader's Manual Grading page, in the
    # instructor's Jupyter origin, and the feedback) shows student content inert: markdown and outputs cleaned
    # against an allow-list (nbgrader_sandbox.render), no script output emitted. The feedback's exporter also drops
    # unsafe outputs again and puts a Content-Security-Policy in the page; the formgrader does too where the Jupyter
    # server loads the nbgrader_sandbox.render extension.
    c.HTMLExporter.sanitize_html = True
    c.HTMLExporter.preprocessors = [_P + "SafeOutputs"]  # for notebooks graded before it
    c.HTMLExporter.filters = {"markdown2html": "nbgrader_sandbox.render.markdown2html",
                              "clean_html": "nbgrader_sandbox.render.clean_html"}
    c.GenerateFeedback.exporter_class = "nbgrader_sandbox.render.SafeHTMLExporter"
