"""Chapter 8's checks: ``check_running_stats``."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._engine import (
    _rng,
    _Case,
    _Spec,
    _part,
    _rows,
    _run,
    _tol,
)
from .ch01_layernorm import _F16, _stats_cases, _stats_variant


# The profiler that catches np.var and np.std (two passes over each row), as source text: this check defines it from
# the text, and the grading server (lnkit.grading.server), which imports nothing of lnkit, from the same text.
SPY_SOURCE = '''
def two_pass_spy(frame, event, arg):
    if event == "call":
        code = frame.f_code
        if code.co_name in ("_var", "_std") and code.co_filename.replace("\\\\", "/").endswith("numpy/_core/_methods.py"):
            return f"np.{code.co_name[1:]} (or the array's .{code.co_name[1:]}() method), which makes two passes,"
    return None
'''
_spy: dict = {}
exec(SPY_SOURCE, _spy)  # noqa: S102 - our own text, above
_two_pass_spy = _spy["two_pass_spy"]


def _running_cases(hidden: bool) -> list[_Case]:
    cases = _stats_cases(hidden)
    rng = _rng(hidden, 11)
    extra = [((4, 32), np.float64, 1e9, 1.0), ((3, 16), np.float32, 3e4, 1.0)] if not hidden else [
        ((5, 24), np.float64, -4e9, 2.0), ((2, 3, 16), np.float32, 2e4, 1.0)]
    for shape, dtype, offset, scale in extra:
        x = _rows(rng, shape, dtype, offset, scale)
        t = _tol(dtype)
        # the values themselves are rounded to the dtype's spacing at |offset| (0.002 for float32 at 2e4): a correct
        # one-pass variance is off by a few of those spacings times the spread, never by the offset's square
        spacing = float(np.spacing(np.asarray(abs(offset), dtype=dtype)))
        cases.append(_Case((x,), f"{np.dtype(dtype)} rows whose mean is about {offset:g}", frozenset({"offset"}),
                           [(t, t * abs(offset)), (1e-3, max(1e-3 * scale * scale, 8 * spacing * scale))]))
    return cases


def check_running_stats(running_stats: Callable, hidden: bool = False, part: str = "all") -> None:
    """Check ``running_stats(x) -> (mean, var)``: one pass over each row, stable when values sit far from zero.

    ``part="near-zero"`` runs only the rows near zero, ``part="far-from-zero"`` only the rows far from it (where a
    naive one-pass formula cancels), ``part="contract"`` only the contract (shapes, dtypes, inputs left unchanged,
    no two-pass np.var): the graded notebook scores them separately.
    """
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    _part(part, ("all", "near-zero", "far-from-zero", "contract"))
    cases = _running_cases(hidden)
    if part in ("near-zero", "far-from-zero"):
        cases = [c for c in cases if ("offset" in c.tags) == (part == "far-from-zero")]
    spec = _Spec(
        section="chapter 8, \"Welford's algorithm: one pass and stable\"",
        check="check_running_stats",
        fname="running_stats",
        argnames=("x",),
        outnames=("mean", "var"),
        expected=_stats_variant(),
        variants=[
            ("the variance is the unbiased one (dividing by C - 1). LayerNorm uses the biased variance: divide "
             "the running sum of squared deviations by n, not n − 1.",
             _stats_variant(ddof=1)),
            ("the two values come back in the wrong order: return `(mean, var)`.", _stats_variant(what="varmean")),
            ("the second value is the standard deviation; return the variance.", _stats_variant(what="meanstd")),
        ],
        tag_rules=[("offset", "the variance loses its accuracy when the values sit far from zero: a one-pass sum of "
                              "x and of x² cancels catastrophically (E[x²] − E[x]²). Keep a running mean and a "
                              "running sum of squared deviations from it (Welford's update) instead."),
                   ("f16big", _F16)],
        spy_extra=_two_pass_spy,
        spy_name="two_pass",
        contract_only=part == "contract",
    )
    _run(spec, running_stats, cases)

