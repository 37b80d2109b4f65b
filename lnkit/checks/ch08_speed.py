"""Chapter 8's checks: ``check_running_stats``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._engine import (
    _Case,
    _part,
    _rng,
    _rows,
    _run,
    _Spec,
    _tol,
)
from .ch01_layernorm import _F16, _stats_cases, _stats_variant


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
    """Check ``running_stats(x) -> (mean, var)``: the values, accurate when the rows sit far from zero.

    What is graded is what the function returns, never how it computed it: the model answer is Welford's one pass
    (what a fused kernel does, chapter 8), and any accurate method scores, np.var's two passes included. The naive
    one-pass formula E[x²] − E[x]² fails the rows far from zero, where it cancels catastrophically.

    ``part="near-zero"`` runs only the rows near zero, ``part="far-from-zero"`` only the rows far from it,
    ``part="contract"`` only the contract (shapes, dtypes, inputs left unchanged, no reference called): the graded
    notebook scores them separately.
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
        contract_only=part == "contract",
    )
    _run(spec, running_stats, cases, hidden=hidden)

