"""Chapter 1's checks: ``check_layer_norm``, ``check_layer_norm_stats``."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ._engine import (
    _array_cases,
    _Case,
    _in_dtype,
    _ln64,
    _rng,
    _run,
    _Spec,
)


def _stats_variant(axis=(-1,), ddof=0, what="meanvar", keepdims=False):
    def variant(case):
        x = case.args[0]
        xw = x.astype(np.float64)
        ax = tuple(range(x.ndim)) if axis is None else tuple(a % x.ndim for a in axis)
        mean = xw.mean(axis=ax, keepdims=True)
        n = math.prod(x.shape[a] for a in ax)
        var = ((xw - mean) ** 2).sum(axis=ax, keepdims=True) / (n - ddof)
        if not keepdims:
            mean, var = mean.squeeze(ax), var.squeeze(ax)
        out = _in_dtype(x)
        if what == "meanstd":
            return mean.astype(out), np.sqrt(var).astype(out)
        if what == "varmean":
            return var.astype(out), mean.astype(out)
        return mean.astype(out), var.astype(out)

    return variant


_WRONG_AXIS_0 = (
    "the statistics are taken over the wrong axis: axis 0 (across the tokens, or the batch) instead of the last "
    "axis. LayerNorm takes one mean and one variance per token, over its C features: use `axis=-1`."
)
_WRONG_AXIS_ALL = (
    "the statistics are taken over the whole array (one mean and variance for everything) instead of over the last "
    "axis. LayerNorm takes one mean and one variance per token, over its C features: use `axis=-1`."
)
_WRONG_AXIS_LEADING = (
    "the statistics are taken over the leading axes (per feature across tokens, as BatchNorm does) instead of over "
    "the last axis. LayerNorm takes one pair per token: use `axis=-1`."
)
_UNBIASED = (
    "the variance is the unbiased one (dividing by C - 1). LayerNorm uses the biased variance, dividing by C "
    "(NumPy's default, `ddof=0`; chapter 1, \"Step 2: the biased variance\")."
)
_EPS_OUTSIDE = (
    "eps is outside the square root: LayerNorm divides by sqrt(var + eps), not by sqrt(var) + eps. The two differ "
    "most where the variance is near eps or below it, as in the input below (variance about 1e-8, eps 1e-5); on "
    "rows of variance about 1 they differ by about eps/2 relative, still more than the check allows."
)
_CANCEL = (
    "the variance loses all its accuracy when a row's values sit far from zero: computing it as "
    "E[x²] − E[x]² subtracts two huge, nearly equal numbers (catastrophic cancellation). Compute the mean first, "
    "then the mean of (x − mean)²."
)
_F16 = (
    "float16 input overflows: the squares of values in the hundreds or thousands exceed float16's largest number "
    "(65504) and become infinity. Compute in float32 (`x.astype(np.float32)`) and convert the result back to float16 "
    "at the end."
)


def _stats_cases(hidden: bool) -> list[_Case]:
    rng = _rng(hidden, 0)
    cases = []
    for c in _array_cases(rng, hidden, params=False, eps_arg=False, f16_scale=100.0):
        x = c.args[0]
        spread = float(np.std(x.astype(np.float64))) if x.size else 1.0
        t = c.tol[0][0]
        mean_atol = t * (1.0 + float(np.abs(x.astype(np.float64)).max(initial=0.0)))
        var_atol = t * max(spread, 1e-4) ** 2 * 10
        cases.append(_Case((x,), c.desc, c.tags, [(t, mean_atol), (max(t, 1e-6) * 10, var_atol)]))
    return cases


def check_layer_norm_stats(layer_norm_stats: Callable, hidden: bool = False) -> None:
    """Check ``layer_norm_stats(x) -> (mean, var)``: the mean and biased variance of every row, shapes x.shape[:-1]."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    spec = _Spec(
        section='chapter 1, "Step 2: the biased variance"',
        check="check_layer_norm_stats",
        fname="layer_norm_stats",
        argnames=("x",),
        outnames=("mean", "var"),
        expected=_stats_variant(),
        variants=[
            (_UNBIASED, _stats_variant(ddof=1)),
            ("the second value is the standard deviation; the exercise asks for the variance (no square root).",
             _stats_variant(what="meanstd")),
            ("the two values come back in the wrong order: return `(mean, var)`, the mean first.",
             _stats_variant(what="varmean")),
            ("the statistics keep a trailing axis of size 1 (`keepdims=True`): mean and var must have shape "
             "x.shape[:-1], one number per row.", _stats_variant(keepdims=True)),
            (_WRONG_AXIS_0, _stats_variant(axis=(0,))),
            (_WRONG_AXIS_ALL, _stats_variant(axis=None)),
        ],
        tag_rules=[("offset", _CANCEL), ("f16big", _F16)],
    )
    _run(spec, layer_norm_stats, _stats_cases(hidden), hidden=hidden)


def _ln_expected(case):
    x, gamma, beta, eps = case.args
    return (_ln64(x, gamma, beta, eps),)


def _params_as_mistaken(opts: dict, gamma, beta, eps):
    """(gamma, beta, eps) as code with the mistakes named in ``opts`` uses them, taking those names out of ``opts``;
    None where the mistake changes nothing (the eps argument ignored when it is the default anyway)."""
    if opts.pop("no_gamma", False):
        gamma = None
    if opts.pop("no_beta", False):
        beta = None
    if opts.pop("swap", False):
        gamma, beta = beta, gamma
    if opts.pop("default_eps", False):
        if eps == 1e-5:
            return None
        eps = 1e-5
    return gamma, beta, eps


def _ln_variant(**kw):
    def variant(case):
        x, gamma, beta, eps = case.args
        opts = dict(kw)
        params = _params_as_mistaken(opts, gamma, beta, eps)
        if params is None:
            return None
        g, b, eps = params
        axis = opts.pop("axis", (-1,))
        if axis == "leading":
            if x.ndim < 2:
                return None
            axis = tuple(range(x.ndim - 1))
        elif axis is not None:
            if x.ndim < 2:
                return None
            axis = tuple(a % x.ndim for a in axis)
        return (_ln64(x, g, b, eps, axis=axis, **opts),)

    return variant


def _ln_without_eps(case):
    x, gamma, beta, _ = case.args
    return (_ln64(x, gamma, beta, 0.0),)


def check_layer_norm(layer_norm: Callable, hidden: bool = False) -> None:
    """Check ``layer_norm(x, gamma, beta, eps=1e-5)`` against LayerNorm over the last axis (PyTorch's semantics)."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    rng = _rng(hidden, 1)
    spec = _Spec(
        section='chapter 1, "Putting it together"',
        check="check_layer_norm",
        fname="layer_norm",
        argnames=("x", "gamma", "beta", "eps"),
        outnames=("output",),
        expected=_ln_expected,
        variants=[
            (_UNBIASED, _ln_variant(ddof=1)),
            (_EPS_OUTSIDE, _ln_variant(eps_outside=True), "tiny"),
            ("the output is divided by the variance instead of by the standard deviation: divide by "
             "sqrt(var + eps).", _ln_variant(divide_by_var=True)),
            ("gamma is ignored: multiply the normalized values by gamma (one gain per feature).",
             _ln_variant(no_gamma=True)),
            ("beta is ignored: add beta (one bias per feature) after multiplying by gamma.",
             _ln_variant(no_beta=True)),
            ("gamma and beta are swapped: the output is normalized * gamma + beta.", _ln_variant(swap=True)),
            ("beta is added before multiplying by gamma: the output is normalized * gamma + beta, not "
             "(normalized + beta) * gamma.", _ln_variant(beta_first=True)),
            ("the eps argument is ignored (1e-5 is used whatever eps is passed): use the eps you are given.",
             _ln_variant(default_eps=True)),
            ("the statistics are taken over all axes but the last (per feature, as BatchNorm does) instead of over "
             "the last axis. LayerNorm normalizes each token over its C features: use `axis=-1, keepdims=True`.",
             _ln_variant(axis="leading")),
            (_WRONG_AXIS_0, _ln_variant(axis=(0,))),
            (_WRONG_AXIS_ALL, _ln_variant(axis=None)),
            ("eps is missing, so constant rows give NaN: their variance is 0, and 0 / sqrt(0) is NaN. eps is there "
             "to prevent this: divide by sqrt(var + eps).", _ln_without_eps),
        ],
        tag_rules=[("offset", _CANCEL), ("f16big", _F16)],
    )
    _run(spec, layer_norm, _array_cases(rng, hidden), hidden=hidden)
