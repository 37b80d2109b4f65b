"""What the grader needs to know about this course: the one module of lnkit that the grader imports.

``nbgrader_config.py`` names it (``c.GradingSandbox.course = "lnkit.checks.course"``); the grader (nbgrader-sandbox,
in grader/ of the repository) reads the names below and checks them when it loads them, as its module
``nbgrader_sandbox.course`` describes. This module imports nothing of the grader, and nothing of nbgrader.
"""

from __future__ import annotations

import glob
import os
import re

from . import __all__ as _check_names
from ._engine import set_hidden_secret
from .ch05_rmsnorm import STAND_IN_SOURCE
from .ch06_pre_post_ln import CARRIED_SOURCE, Linear, Norm

# Test cells import their checks from here, and only these.
CHECK_MODULES = ("lnkit.checks",)
# Every check, with what it sends to the student's side besides their code: chapter 5's check replaces the student's
# rms_norm by a stand-in during each call; chapter 6's pass a sublayer and a norm as arguments.
CHECKS = {name: {} for name in _check_names} | {
    "check_layer_norm_via_rms": {"stand_ins": ("rms_norm",)},
    "check_pre_ln": {"carried": ("Linear", "Norm")},
    "check_post_ln": {"carried": ("Linear", "Norm")},
}
STAND_INS = {"rms_norm": STAND_IN_SOURCE}
CARRIED = {"Linear": (Linear, CARRIED_SOURCE), "Norm": (Norm, CARRIED_SOURCE)}

# lnkit holds the reference implementations and the checks: graded code never gets it, and `import lnkit` there gives
# a module whose every use is reported as calling the reference. torch has its own layer_norm: the same, unless an
# assignment grants it (chapter 6's builds its measurement with torch).
REFERENCES = ("lnkit",)
REFUSED_UNLESS_GRANTED = ("torch",)
# The in-kernel run executes the student's notebook as they see it, visible checks included (for the feedback only).
KERNEL_PACKAGES = ("lnkit",)


def set_hidden_key(key: bytes | None) -> None:
    """Draw every hidden case from this submission's key (see lnkit.checks.set_hidden_secret)."""
    set_hidden_secret(key)


def _code_cells(path: str) -> str:
    """The code cells of a MyST Markdown notebook (the book's chapters), without their option lines."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    blocks = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    return "\n\n".join(re.sub(r"\A(?::[\w-]+:[^\n]*\n)+", "", b) for b in blocks)


def similarity_references(course_root: str) -> dict[str, str]:
    """lnkit's source and the book's code cells: what a submission is compared with besides the classmates'.

    Not the instructor's solution: it is the natural way to write a five-line answer, and honest answers share most
    of their lines with it.
    """
    refs: dict[str, str] = {}
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in sorted(glob.glob(os.path.join(package, "**", "*.py"), recursive=True)):
        with open(path, encoding="utf-8") as fh:
            refs[os.path.relpath(path, os.path.dirname(package)).replace(os.sep, "/")] = fh.read()
    for path in sorted(glob.glob(os.path.join(course_root, "book", "*.md"))):
        code = _code_cells(path)
        if code.strip():
            refs[f"book/{os.path.basename(path)}"] = code
    return refs
