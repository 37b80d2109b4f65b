"""Chapter 11's checks: ``check_dyt``, ``check_fit_dyt_alpha``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._engine import (
    _array_cases,
    _Case,
    _in_dtype,
    _rng,
    _rows,
    _run,
    _Spec,
    _tol,
)

_DYT = 'chapter 11, "Ten recipes in one harness"'


# --- dyt(x, alpha, gamma, beta) -> y --------------------------------------------------------------------------------


def _dyt_cases(hidden: bool) -> list[_Case]:
    rng = _rng(hidden, 16)
    cases = []
    for i, c in enumerate(_array_cases(rng, hidden, params=True, eps_arg=False)):
        x, gamma, beta = c.args
        alpha = round(float(rng.uniform(0.05, 3.0)), 4) if hidden else [0.5, 2.0, 0.1, 1.0][i % 4]
        t = _tol(x.dtype, 4.0)  # tanh is bounded and well conditioned: rounding of x and of the result only
        size = 1.0 + float(np.abs(gamma.astype(np.float64)).max(initial=0.0) + np.abs(beta.astype(np.float64)).max(
            initial=0.0))
        cases.append(_Case((x, alpha, gamma, beta), c.desc, c.tags, [(t, t * size)]))
    return cases


def _dyt64(alpha_in=True, alpha_outside=False, no_gamma=False, no_beta=False, beta_inside=False):
    """gamma * tanh(alpha * x) + beta in float64, with switchable mistakes, returned in x's dtype."""

    def f(case):
        x, alpha, gamma, beta = case.args
        xw = np.asarray(x, dtype=np.float64)
        g, b = np.asarray(gamma, dtype=np.float64), np.asarray(beta, dtype=np.float64)
        inner = alpha * xw if alpha_in else xw
        if beta_inside:
            inner = inner + b
        y = np.tanh(inner)
        if alpha_outside:
            y = alpha * y
        if not no_gamma:
            y = g * y
        if not (no_beta or beta_inside):
            y = y + b
        return (y.astype(_in_dtype(np.asarray(x))),)

    return f


def check_dyt(dyt: Callable, hidden: bool = False) -> None:
    """Check ``dyt(x, alpha, gamma, beta)``: Dynamic Tanh, ``gamma * tanh(alpha * x) + beta`` over the last axis."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    spec = _Spec(
        section=_DYT,
        check="check_dyt",
        fname="dyt",
        argnames=("x", "alpha", "gamma", "beta"),
        outnames=("output",),
        expected=_dyt64(),
        variants=[
            ("alpha is ignored: it scales x inside the tanh, where it sets how soon the tanh saturates.",
             _dyt64(alpha_in=False)),
            ("alpha multiplies the tanh's output instead of its input: inside, it decides which values the tanh "
             "squashes; outside, it would only rescale the result, which gamma already does.",
             _dyt64(alpha_in=False, alpha_outside=True)),
            ("gamma is ignored: multiply the tanh by gamma, feature by feature, as LayerNorm's gain does.",
             _dyt64(no_gamma=True)),
            ("beta is ignored: add beta after multiplying by gamma.", _dyt64(no_beta=True)),
            ("beta is added inside the tanh: like LayerNorm's bias, it is added to the output, after the gain.",
             _dyt64(beta_inside=True)),
        ],
    )
    _run(spec, dyt, _dyt_cases(hidden), hidden=hidden)


# --- fit_dyt_alpha(x, eps=1e-5) -> alpha ----------------------------------------------------------------------------

# An answer is right when its mean squared error is within this fraction of the best one: alpha itself can be
# anywhere in the flat bottom of the error curve, and a search stopped there is as good as the exact minimum.
_LOSS_SLACK = 1e-5


def _ln0(x, eps, axis=-1):
    xw = np.asarray(x, dtype=np.float64)
    mean = xw.mean(axis=axis, keepdims=True)
    return (xw - mean) / np.sqrt(((xw - mean) ** 2).mean(axis=axis, keepdims=True) + eps)


def _loss(alpha, x64, target):
    return float(np.mean((np.tanh(alpha * x64) - target) ** 2))


def _argmin(x64, target) -> float:
    """The alpha > 0 of least mean squared error: a log-spaced grid over twelve decades, then golden sections."""
    scale = float(np.abs(x64).max())
    grid = np.logspace(-6, 6, 1201) / scale
    losses = np.array([_loss(a, x64, target) for a in grid])
    i = int(np.argmin(losses))
    lo, hi = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if _loss(np.exp(a), x64, target) < _loss(np.exp(b), x64, target):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def _fit_cases(hidden: bool) -> list[_Case]:
    rng = _rng(hidden, 17)
    specs = []  # (shape, dtype, offset, scale, eps, desc, tags)
    if not hidden:
        specs = [
            ((4, 8), np.float64, 0.0, 1.0, 1e-5, "rows of unit spread", {"basic"}),
            ((16, 32), np.float64, 0.0, 3.0, 1e-5, "rows of spread 3", {"basic"}),
            ((8, 64), np.float32, 1.0, 2.0, 1e-5, "float32 rows with mean about 1 and spread 2", {"f32", "offset"}),
            ((2, 6, 16), np.float64, -0.5, 1.5, 1e-5, "shape (B, T, C)", {"basic"}),
            ((64,), np.float64, 0.0, 0.2, 1e-5, "one token, shape (C,)", {"basic"}),
            ((6, 8), np.float64, 0.3, 0.02, 1e-3, "eps=1e-3 is passed, and the rows' variance (4e-4) is below it",
             {"eps"}),
        ]
    else:
        for _ in range(6):
            ndim = int(rng.integers(1, 4))
            shape = tuple(int(d) for d in rng.integers(1, 6, size=ndim - 1)) + (int(rng.integers(8, 48)),)
            dtype = [np.float64, np.float32][int(rng.integers(0, 2))]
            specs.append((shape, dtype, float(rng.choice([0.0, 0.5, -1.0])), float(rng.choice([0.3, 1.0, 2.5])),
                          1e-5, "random", {"random"}))
        specs.append(((5, 12), np.float64, 0.2, 0.03, float(rng.choice([2e-3, 5e-3])),
                      "an eps other than the default, larger than the rows' variance", {"eps"}))
    cases = []
    for shape, dtype, offset, scale, eps, desc, tags in specs:
        x = _rows(rng, shape, dtype, offset, scale)
        if "basic" in tags and x.ndim >= 2 and x.shape[0] > 2:
            x[1] *= 4  # rows of different scales: one alpha cannot fit them all, and the best one is a compromise
            desc += ", row 1 four times larger"
        cases.append(_Case((x, eps), desc, frozenset(tags)))
    for case in cases:
        x, eps = case.args
        x64 = np.asarray(x, dtype=np.float64)
        target = _ln0(x64, eps)
        best = _argmin(x64, target)
        floor = _loss(best, x64, target)
        # the alphas whose error is within _LOSS_SLACK of the best: bisect on each side, in log(alpha)
        edges = []
        for direction in (-1, 1):
            near, far = np.log(best), np.log(best) + direction * np.log(1e3)
            for _ in range(60):
                mid = (near + far) / 2
                if _loss(np.exp(mid), x64, target) <= floor * (1 + _LOSS_SLACK):
                    near = mid
                else:
                    far = mid
            edges.append(float(np.exp(near)))
        case.tol = [(0.0, max(best - edges[0], edges[1] - best))]
    return cases


def _fit(target="ln", axis=-1, use_eps=True, method="fit"):
    """The best alpha, with switchable mistakes, as a Python float."""

    def f(case):
        x, eps = case.args
        x64 = np.asarray(x, dtype=np.float64)
        if method == "inverse std":
            return (float(1.0 / x64.std()),)
        norm = _ln0(x64, eps if use_eps else 0.0, axis=axis) if target != "x" else x64
        inputs = _ln0(x64, eps) if target == "normalized input" else x64
        if not np.all(np.isfinite(norm)):
            return None
        return (_argmin(inputs, norm),)

    return f


def check_fit_dyt_alpha(fit_dyt_alpha: Callable, hidden: bool = False) -> None:
    """Check ``fit_dyt_alpha(x, eps=1e-5) -> alpha``: the alpha > 0 for which ``tanh(alpha * x)`` is closest, in mean
    squared error over all elements, to the LayerNorm of x over its last axis without gain or bias."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    spec = _Spec(
        section=_DYT,
        check="check_fit_dyt_alpha",
        fname="fit_dyt_alpha",
        argnames=("x", "eps"),
        outnames=("alpha",),
        scalars=True,
        expected=_fit(),
        variants=[
            ("this is 1 / std(x), a first guess: tanh(x / std) is not the closest tanh to the LayerNorm, because "
             "the tanh bends where the LayerNorm is straight. Minimise the mean squared error over alpha.",
             _fit(method="inverse std")),
            ("this alpha fits tanh(alpha * x) to x itself: the target is the LayerNorm of x (over its last axis, "
             "without gain or bias), the function DyT stands in for.", _fit(target="x")),
            ("this alpha fits tanh(alpha * x_hat) to x_hat: DyT reads the raw x, not a normalized one (it has no "
             "statistics to normalize with). Fit tanh(alpha * x) to the LayerNorm of x.",
             _fit(target="normalized input")),
            ("the LayerNorm you fit to takes its mean and variance over all of x: LayerNorm normalizes each "
             "token, over the last axis.", _fit(axis=None)),
            ("the eps argument is missing from your LayerNorm: divide by sqrt(var + eps), with the eps you are "
             "given.", _fit(use_eps=False)),
        ],
    )
    _run(spec, fit_dyt_alpha, _fit_cases(hidden), hidden=hidden)
