"""Chapter 2's checks: ``check_count_statistics``, ``check_normalize_over``."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ._engine import (
    _Case,
    _in_dtype,
    _rng,
    _rows,
    _run,
    _Spec,
    _spread_cond,
    _tol,
)
from .ch01_layernorm import _CANCEL, _F16


def _norm_over64(x, axes, eps, ddof=0, eps_outside=False):
    xw = x.astype(np.float64)
    nd = x.ndim
    axes = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    axes = tuple(sorted(a % nd for a in axes))
    mean = xw.mean(axis=axes, keepdims=True)
    n = math.prod(x.shape[a] for a in axes)
    var = ((xw - mean) ** 2).sum(axis=axes, keepdims=True) / (n - ddof)
    y = (xw - mean) / (np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps))
    return y.astype(_in_dtype(x))


def _norm_over_cases(hidden: bool) -> list[_Case]:
    rng = _rng(hidden, 2)
    specs = []  # (shape, axes, dtype, offset, scale, desc, tags)
    if not hidden:
        specs = [
            ((5,), -1, np.float64, 0.0, 1.0, "one vector", {"basic"}),
            ((3, 4), 0, np.float64, 1.0, 2.0, "axis 0 of a (T, C) array", {"basic"}),
            ((2, 3, 4), -1, np.float64, 0.0, 1.0, "LayerNorm: per token", {"basic"}),
            ((2, 3, 4), (0, 1), np.float64, 0.0, 1.0, "BatchNorm-style: per feature", {"basic"}),
            ((2, 3, 4), 1, np.float64, 0.0, 1.0, "per feature across one sequence's tokens", {"basic"}),
            ((2, 3, 4), (0, 1, 2), np.float64, 0.0, 1.0, "the whole tensor", {"basic"}),
            ((2, 3, 4), (-2, -1), np.float64, 0.0, 1.0, "negative axes, per sequence", {"basic"}),
            ((2, 3, 4, 5), (1, 3), np.float32, 0.0, 1.0, "two axes that are not next to each other", {"basic"}),
            ((0, 3, 4), (1, 2), np.float64, 0.0, 1.0, "zero sequences in the batch", {"zero"}),
            ((4, 8), -1, np.float32, 1e4, 1.0, "float32 rows whose mean is about 1e4", {"offset"}),
            ((2, 3, 8), (0, 1), np.float16, 0.5, 1.0, "float16", {"f16"}),
            ((2, 8), -1, np.float16, 0.0, 1000.0, "float16 values in the thousands", {"f16big"}),
            ((3, 6), -1, np.float64, 2.0, 1e-4, "tiny variance, smaller than eps", {"tiny"}),
            ((4, 5), 1, np.float64, 0.0, 1.0, "row 2 is constant", {"constant"}),
        ]
    else:
        for _ in range(12):
            nd = int(rng.integers(1, 5))
            shape = tuple(int(d) for d in rng.integers(2, 5, size=nd))
            k = int(rng.integers(1, nd + 1))
            axes = tuple(int(a) for a in rng.choice(nd, size=k, replace=False))
            axes = tuple(a - nd if rng.integers(0, 2) else a for a in axes)
            dtype = [np.float64, np.float32][int(rng.integers(0, 2))]
            specs.append((shape, axes if k > 1 else axes[0], dtype, float(rng.choice([0.0, 3.0])), 1.5, "random",
                          {"random"}))
    cases = []
    for shape, axes, dtype, offset, scale, desc, tags in specs:
        x = _rows(rng, shape, dtype, offset, scale)
        if "constant" in tags:
            x[2] = 1.5
        cond = 1.0 + abs(offset) / scale
        if hidden:
            cond = max(cond, _spread_cond(x, axes))
        tol = _tol(dtype, cond)
        eps = 1e-5
        cases.append(_Case((x, axes, eps), desc, frozenset(tags), [(tol, tol)]))
    eps = 1e-3 if not hidden else 4e-3
    cases.append(_Case((_rows(rng, (3, 5), np.float64, 1.0, 0.05), (0, 1), eps),
                       f"eps={eps} is passed, and the variance is near it", frozenset({"eps"}), [(1e-9, 1e-9)]))
    return cases


def check_normalize_over(normalize_over: Callable, hidden: bool = False) -> None:
    """Check ``normalize_over(x, axes, eps=1e-5)``: mean 0, variance 1 over ``axes``, no gain, no bias."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames

    def variant(kind):
        def f(case):
            x, axes, eps = case.args
            nd = x.ndim
            ax = (axes,) if isinstance(axes, int) else tuple(axes)
            ax = tuple(sorted(a % nd for a in ax))
            if kind == "unbiased":
                return (_norm_over64(x, ax, eps, ddof=1),)
            if kind == "outside":
                return (_norm_over64(x, ax, eps, eps_outside=True),)
            if kind == "complement":
                rest = tuple(a for a in range(nd) if a not in ax)
                return (_norm_over64(x, rest, eps),) if rest else None
            if kind == "last":
                return (_norm_over64(x, -1, eps),) if ax != (nd - 1,) else None
            if kind == "first":
                return (_norm_over64(x, ax[:1], eps),) if len(ax) > 1 else None
            if kind == "default_eps":
                return (_norm_over64(x, ax, 1e-5),) if eps != 1e-5 else None
            raise AssertionError(kind)

        return f

    spec = _Spec(
        section='chapter 2, "Four schemes, one function"',
        check="check_normalize_over",
        fname="normalize_over",
        argnames=("x", "axes", "eps"),
        outnames=("output",),
        expected=lambda case: (_norm_over64(*case.args),),
        variants=[
            ("the variance is the unbiased one (dividing by n - 1). Normalization layers use the biased variance, "
             "dividing by n, the number of values that share one statistic: `x.var(axis=axes, keepdims=True)` with "
             "its default `ddof=0`.", variant("unbiased")),
            ("eps is outside the square root: divide by sqrt(var + eps), not by sqrt(var) + eps.", variant("outside")),
            ("the statistics are taken over the axes that are NOT in `axes`: `axes` lists the axes to average "
             "over, the others are kept.", variant("complement")),
            ("`axes` is ignored: the statistics are always taken over the last axis. Pass `axis=axes` to "
             "mean and var (NumPy accepts a tuple of axes).", variant("last")),
            ("only the first of several axes is used: when `axes` is a tuple, average over all of them at once "
             "(`x.mean(axis=tuple(axes), keepdims=True)`).", variant("first")),
            ("the eps argument is ignored (1e-5 is used whatever eps is passed): use the eps you are given.",
             variant("default_eps")),
        ],
        tag_rules=[("offset", _CANCEL), ("f16big", _F16)],
    )
    _run(spec, normalize_over, _norm_over_cases(hidden), hidden=hidden)


def check_count_statistics(count_statistics: Callable, hidden: bool = False) -> None:
    """Check ``count_statistics(shape, axes) -> int``: the product of the sizes of the axes not normalized over."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames

    def axes_of(shape, axes):
        ax = (axes,) if isinstance(axes, int) else tuple(axes)
        return tuple(a % len(shape) for a in ax)

    def count(shape, axes, inverted=False):
        ax = axes_of(shape, axes)
        return math.prod(d for i, d in enumerate(shape) if (i in ax) == inverted)

    if not hidden:
        raw = [((5,), -1), ((4, 6), 0), ((4, 6), -1), ((1, 1024, 768), -1), ((4, 1024, 768), -1),
               ((4, 1024, 768), (0, 1)), ((4, 1024, 768), 1), ((4, 1024, 768), (0, 1, 2)),
               ((2, 3, 5, 7), (1, 3)), ((2, 3, 5, 7), (-3, -1)), ((0, 16, 8), -1), ((8, 16, 32), (-2,))]
    else:
        rng = _rng(True, 3)
        raw = []
        for _ in range(15):
            nd = int(rng.integers(1, 5))
            shape = tuple(int(d) for d in rng.integers(2, 40, size=nd))
            k = int(rng.integers(1, nd + 1))
            ax = tuple(int(a) - (nd if rng.integers(0, 2) else 0) for a in rng.choice(nd, size=k, replace=False))
            raw.append((shape, ax if k > 1 else ax[0]))
    raw.sort(key=lambda r: (math.prod(r[0]), len(r[0])))  # the smallest arrays first
    cases = [_Case((shape, axes), "", frozenset(), order=i) for i, (shape, axes) in enumerate(raw)]
    spec = _Spec(
        section='chapter 2, "Who shares a statistic"',
        check="check_count_statistics",
        fname="count_statistics",
        argnames=("shape", "axes"),
        outnames=("count",),
        expected=lambda case: (count(*case.args),),
        integers=True,
        variants=[
            ("you multiplied the sizes of the axes normalized OVER: that is how many values share one statistic, "
             "not how many statistics there are (chapter 2, \"Who shares a statistic\").",
             lambda case: (count(*case.args, inverted=True),)),
            ("negative axes are not handled: -1 means the last axis (use `a % len(shape)` to turn a negative axis "
             "into a non-negative one).",
             lambda case: (math.prod(d for i, d in enumerate(case.args[0])
                                     if i not in ((case.args[1],) if isinstance(case.args[1], int)
                                                  else tuple(case.args[1]))),)),
            ("you returned the number of values in the array; each statistic is shared by many values (chapter 2, "
             "\"Who shares a statistic\").", lambda case: (math.prod(case.args[0]),)),
        ],
    )
    _run(spec, count_statistics, cases, hidden=hidden)
