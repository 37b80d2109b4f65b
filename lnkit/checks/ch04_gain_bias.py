"""Chapter 4's checks: ``check_fit_gain_bias``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._engine import (
    _Case,
    _in_dtype,
    _part,
    _rng,
    _rows,
    _run,
    _Spec,
)
from .ch01_layernorm import _CANCEL


def _xhat64(x, eps, ddof=0, axis=-1):
    xw = np.asarray(x, dtype=np.float64)
    mean = xw.mean(axis=axis, keepdims=True)
    n = xw.shape[axis]
    var = ((xw - mean) ** 2).sum(axis=axis, keepdims=True) / (n - ddof)
    return (xw - mean) / np.sqrt(var + eps)


def _line_fit(u, y, how="ls"):
    """Per-feature line y = gamma * u + beta over every token (all leading axes)."""
    c = u.shape[-1]
    u = u.reshape(-1, c)
    y = np.asarray(y, dtype=np.float64).reshape(-1, c)
    mu, my = u.mean(axis=0), y.mean(axis=0)
    if how == "std":
        gamma = y.std(axis=0) / u.std(axis=0)
    else:
        gamma = ((u - mu) * (y - my)).mean(axis=0) / ((u - mu) ** 2).mean(axis=0)
    beta = my if how == "nointercept" else my - gamma * mu
    return gamma, beta


def _gain_bias_cases(hidden: bool) -> list[_Case]:
    rng = _rng(hidden, 5)
    specs = []  # (shape, dtype, offset, eps, desc, tags)
    if not hidden:
        specs = [
            ((6, 3), np.float64, 0.0, 1e-5, "six tokens of three features", {"basic"}),
            ((16, 4), np.float64, 1.0, 1e-5, "", {"basic"}),
            ((2, 8, 5), np.float64, 0.0, 1e-5, "shape (B, T, C): fit over every token of every sequence", {"basic"}),
            ((32, 8), np.float32, 0.0, 1e-5, "float32", {"f32"}),
            ((4, 16, 6), np.float32, 0.0, 1e-5, "float32, shape (B, T, C)", {"f32"}),
            ((64, 8), np.float16, 0.0, 1e-5, "float16", {"f16"}),
            ((12, 5), np.float64, 0.0, 0.5, "eps=0.5 is passed, and x's rows have a spread near it", {"eps"}),
            ((2, 3, 10, 4), np.float64, -2.0, 1e-5, "four axes", {"basic"}),
        ]
    else:
        for _ in range(8):
            nd = int(rng.integers(2, 4))
            c = int(rng.integers(2, 9))
            lead = tuple(int(d) for d in rng.integers(2, 6, size=nd - 2)) + (int(rng.integers(8, 30)),)
            dtype = [np.float64, np.float32][int(rng.integers(0, 2))]
            specs.append((lead + (c,), dtype, float(rng.normal()), float(rng.choice([1e-5, 1e-3, 0.3])), "random",
                          {"random"}))
    cases = []
    for shape, dtype, offset, eps, desc, tags in specs:
        c = shape[-1]
        scale = 0.6 if "eps" in tags else 1.5
        x = _rows(rng, shape, dtype, offset, scale)
        gamma = rng.normal(0.5, 1.0, size=c)  # some gains negative: a fit by standard deviations loses the sign
        beta = rng.normal(0.0, 1.0, size=c)
        y = (_xhat64(x, eps) * gamma + beta).astype(dtype)
        t = {np.dtype(np.float64): 1e-7, np.dtype(np.float32): 2e-3, np.dtype(np.float16): 5e-2}[np.dtype(dtype)]
        cases.append(_Case((x, y, eps), desc, frozenset(tags), [(t, t), (t, t)]))
    return cases


_RECOVER = "chapter 4, \"Recovering γ and β from a layer's inputs and outputs\""


def check_fit_gain_bias(fit_gain_bias: Callable, hidden: bool = False, outputs: str = "all",
                        part: str = "all") -> None:
    """Check ``fit_gain_bias(x, y, eps=1e-5) -> (gamma, beta)``: recover a LayerNorm's gain and bias.

    ``outputs="gamma"`` or ``"beta"`` compares only that one, and ``part="contract"`` only the contract (shapes,
    dtypes, inputs left unchanged, no reference called), not the values: the graded notebook scores them separately.
    """
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    select = {"all": None, "gamma": (0,), "beta": (1,)}[outputs]
    contract = _part(part, ("all", "contract")) == "contract"

    def fit(how="ls", **kw):
        def f(case):
            x, y, eps = case.args
            if "eps_default" in kw:
                if eps == 1e-5:
                    return None
                eps = 1e-5
            if kw.get("raw"):
                u = np.asarray(x, dtype=np.float64)
            elif kw.get("axis0"):
                u = _xhat64(x.reshape(-1, x.shape[-1]), eps, axis=0).reshape(x.shape)
            else:
                u = _xhat64(x, eps, ddof=kw.get("ddof", 0))
            gamma, beta = _line_fit(u, y, how)
            if kw.get("first_axis_only") and x.ndim > 2:
                return None
            out = _in_dtype(x)
            if kw.get("swap"):
                return beta.astype(out), gamma.astype(out)
            return gamma.astype(out), beta.astype(out)

        return f

    spec = _Spec(
        section=_RECOVER,
        check="check_fit_gain_bias",
        fname="fit_gain_bias",
        argnames=("x", "y", "eps"),
        outnames=("gamma", "beta"),
        expected=fit(),
        variants=[
            ("the line is fitted to x itself; the layer multiplies the NORMALIZED x by gamma. Normalize every token "
             "of x first (mean 0, variance 1 over its C features, with eps), then fit y against that.",
             fit(raw=True)),
            ("beta is the mean of y, which is right only when the normalized inputs average exactly 0 over the "
             "tokens: the fitted line needs its intercept too (" + _RECOVER + ").", fit(how="nointercept")),
            ("x is normalized per feature across the tokens (axis 0) instead of per token over its features "
             "(the last axis), so your regressor is not what the layer multiplied by gamma.", fit(axis0=True)),
            ("the gain is a ratio of standard deviations, which loses its sign: some gains are negative. Use the "
             "least-squares slope of y against the normalized x, feature by feature, which keeps the sign.",
             fit(how="std")),
            ("gamma and beta come back swapped: return `(gamma, beta)`.", fit(swap=True)),
            ("x is normalized with the unbiased variance (dividing by C - 1); the layer used the biased one.",
             fit(ddof=1)),
            ("the eps argument is ignored: normalize x with the eps you are given, as the layer did.",
             fit(eps_default=True)),
        ],
        tag_rules=[("offset", _CANCEL)],
        select=select,
        contract_only=contract,
    )
    _run(spec, fit_gain_bias, _gain_bias_cases(hidden), hidden=hidden)
