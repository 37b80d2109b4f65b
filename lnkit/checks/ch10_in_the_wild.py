"""Chapter 10's checks: ``check_fold_into_linear``, ``check_fused_add_layer_norm``."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._engine import (
    _spread_cond,
    _rng,
    _Case,
    _Spec,
    _array_cases,
    _in_dtype,
    _ln64,
    _rows,
    _run,
    _tol,
)
from .ch01_layernorm import _CANCEL, _F16, _UNBIASED, _params_as_mistaken


# --- fold_into_linear(gamma, beta, W, b) -> (W2, b2) ----------------------------------------------------------------


def _fold_cases(hidden: bool) -> list[_Case]:
    rng = _rng(hidden, 12)
    specs = []  # (C, D, dtype, desc, tags)
    if not hidden:
        specs = [
            (4, 3, np.float64, "C=4 features into D=3 outputs", {"basic"}),
            (3, 3, np.float64, "a square W (C = D = 3)", {"square"}),
            (1, 5, np.float64, "one feature", {"basic"}),
            (6, 1, np.float64, "one output", {"basic"}),
            (8, 8, np.float32, "float32, square", {"square", "f32"}),
            (16, 48, np.float32, "float32, D = 3C as in GPT-2's query-key-value projection", {"f32"}),
            (8, 8, np.float16, "float16, square", {"square", "f16"}),
            (12, 5, np.float16, "float16", {"f16"}),
            (5, 0, np.float64, "no outputs (D = 0)", {"zero"}),
        ]
    else:
        for _ in range(10):
            c = int(rng.integers(1, 24))
            d = c if rng.integers(0, 3) == 0 else int(rng.integers(1, 40))
            dtype = [np.float64, np.float32, np.float16][int(rng.integers(0, 3))]
            specs.append((c, d, dtype, "random", {"random"} | ({"square"} if c == d else set())))
    cases = []
    for c, d, dtype, desc, tags in specs:
        gamma = rng.normal(1.0, 0.6, size=c)  # some gains negative, none exactly 1
        beta = rng.normal(0.0, 0.8, size=c)
        w = rng.standard_normal((c, d)) / np.sqrt(c)
        b = 0.5 * rng.standard_normal(d)
        gamma, beta, w, b = (a.astype(dtype) for a in (gamma, beta, w, b))
        t = _tol(dtype, 2.0 + np.sqrt(c))  # b2 sums C products
        size = float((np.abs(beta.astype(np.float64)) @ np.abs(w.astype(np.float64)) + np.abs(b)).max(initial=1.0))
        cases.append(_Case((gamma, beta, w, b), desc, frozenset(tags), [(t, t), (t, t * size)]))
    return cases


def _fold(gamma_w="rows", beta_path="W", keep_b=True):
    """The folded (W2, b2) in float64, with switchable mistakes, returned in W's dtype."""

    def f(case):
        gamma, beta, w, b = (np.asarray(a, dtype=np.float64) for a in case.args)
        c, d = w.shape
        if gamma_w == "rows":
            w2 = gamma[:, None] * w
        elif gamma_w == "columns":
            if c != d:
                return None
            w2 = w * gamma[None, :]
        elif gamma_w == "divide":
            w2 = w / gamma[:, None]
        else:  # ignored
            w2 = w
        if beta_path == "W":
            shift = beta @ w
        elif beta_path == "folded W":
            shift = beta @ (gamma[:, None] * w)
        elif beta_path == "W transposed":
            if c != d:
                return None
            shift = w @ beta
        elif beta_path == "added":
            if c != d:
                return None
            shift = beta
        else:  # ignored
            shift = np.zeros(d)
        b2 = shift + b if keep_b else shift
        out = _in_dtype(case.args[2])
        return w2.astype(out), b2.astype(out)

    return f


def check_fold_into_linear(fold_into_linear: Callable, hidden: bool = False, outputs: str = "all") -> None:
    """Check ``fold_into_linear(gamma, beta, W, b) -> (W2, b2)``: a LayerNorm's gain and bias folded into the linear
    layer after it, so that ``LN_{gamma,beta}(x) @ W + b == LN_{1,0}(x) @ W2 + b2`` for every x.

    ``outputs="W2"`` or ``"b2"`` compares only that one: the graded notebook scores them separately.
    """
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    if outputs not in ("all", "W2", "b2"):
        raise ValueError(f"outputs must be one of 'all', 'W2', 'b2'; got {outputs!r}")
    select = {"all": None, "W2": (0,), "b2": (1,)}[outputs]
    spec = _Spec(
        check="check_fold_into_linear",
        fname="fold_into_linear",
        argnames=("gamma", "beta", "W", "b"),
        outnames=("W2", "b2"),
        expected=_fold(),
        variants=[
            ("gamma scales W's columns, the D outputs. gamma[i] multiplies feature i of the LayerNorm's output, "
             "and feature i enters the linear layer through row i of W (W has shape (C, D), the layer computes "
             "z @ W + b).", _fold(gamma_w="columns")),
            ("W is divided by gamma: the LayerNorm multiplies its normalized output by gamma, so the folded weight "
             "has to do the same.", _fold(gamma_w="divide")),
            ("gamma is left out: W2 must take over the gain the LayerNorm no longer applies.",
             _fold(gamma_w="ignored")),
            ("beta goes through the folded weight, so it is multiplied by gamma too. The LayerNorm adds beta after "
             "the gain: beta reaches the outputs through the original W alone.", _fold(beta_path="folded W")),
            ("beta is added to b as it is. beta has one value per input feature (C of them) and b one per output "
             "(D): beta has to pass through the linear layer to become a shift of the outputs.",
             _fold(beta_path="added")),
            ("beta goes through W's transpose: the layer computes z @ W + b, so a row vector of C features meets W "
             "from the left.", _fold(beta_path="W transposed")),
            ("beta is left out: the LayerNorm no longer adds it, so what it contributed to the outputs must move "
             "into b2.", _fold(beta_path="ignored")),
            ("the layer's own bias b is lost: b2 must still contain it, beside what beta contributes.",
             _fold(keep_b=False)),
        ],
        select=select,
    )
    _run(spec, fold_into_linear, _fold_cases(hidden), hidden=hidden)


# --- fused_add_layer_norm(x, residual, gamma, beta, eps=1e-5) -> (y, h) ---------------------------------------------


def _fused_cases(hidden: bool) -> list[_Case]:
    rng = _rng(hidden, 13)
    cases = []
    for c in _array_cases(rng, hidden, params=True, eps_arg=True):
        x, gamma, beta, eps = c.args
        if c.tags & {"tiny", "eps"}:  # a constant residual keeps the small spread these cases are about
            residual = np.full(x.shape, 0.25, dtype=x.dtype)
        else:
            residual = _rows(rng, x.shape, x.dtype, 0.0, 1.0)
            if "constant" in c.tags and x.ndim >= 2 and x.shape[-2] > 1:
                # a constant row of the sum, 1.5 + 1.0: values whose sums and means are exact in every float dtype,
                # so that a correct answer's variance there is exactly 0 (and its output exactly beta)
                x = x.copy()
                x[..., 1, :] = 1.5
                residual[..., 1, :] = 1.0
        h_tol = _tol(x.dtype, 2.0)
        y_tol = c.tol[0]
        if hidden:  # the sum h is what is normalized: its rows' spread says how many digits y keeps
            t = _tol(x.dtype, _spread_cond(x.astype(np.float64) + residual.astype(np.float64), -1))
            y_tol = (max(y_tol[0], t), max(y_tol[1], t))
        cases.append(_Case((x, residual, gamma, beta, eps), c.desc, c.tags, [y_tol, (h_tol, h_tol)]))
    return cases


def _sum64(case):
    x, residual = case.args[0], case.args[1]
    return np.asarray(x, dtype=np.float64) + np.asarray(residual, dtype=np.float64)


def _fused(y_of="h", h_is="sum", swap=False, **ln):
    """(y, h) with switchable mistakes; y from the float64 sum, both in x's dtype."""

    def f(case):
        x, residual, gamma, beta, eps = case.args
        out = _in_dtype(np.asarray(x))
        h = _sum64(case)
        opts = dict(ln)
        params = _params_as_mistaken(opts, gamma, beta, eps)
        if params is None:
            return None
        g, b, eps = params
        if opts.get("axis") == (0,) and h.ndim < 2:
            return None
        x64, residual64 = np.asarray(x, dtype=np.float64), np.asarray(residual, dtype=np.float64)
        if y_of == "pre-LN block":
            y = residual64 + _ln64(x64, g, b, eps, **opts)
        else:
            y = _ln64({"h": h, "x": x64, "residual": residual64}[y_of], g, b, eps, **opts)
        h_out = {"sum": h, "residual": residual64, "y": y}[h_is]
        y, h_out = y.astype(out), h_out.astype(out)
        return (h_out, y) if swap else (y, h_out)

    return f


def check_fused_add_layer_norm(fused_add_layer_norm: Callable, hidden: bool = False) -> None:
    """Check ``fused_add_layer_norm(x, residual, gamma, beta, eps=1e-5) -> (y, h)``: the new residual stream
    ``h = residual + x`` and ``y``, its LayerNorm over the last axis."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    spec = _Spec(
        check="check_fused_add_layer_norm",
        fname="fused_add_layer_norm",
        argnames=("x", "residual", "gamma", "beta", "eps"),
        outnames=("y", "h"),
        expected=_fused(),
        variants=[
            ("y is the LayerNorm of x alone, the sublayer's output. The next LayerNorm reads the residual stream "
             "after x has been added to it: normalize the sum.", _fused(y_of="x")),
            ("y is the LayerNorm of the residual stream as it came in, before x was added: normalize the sum.",
             _fused(y_of="residual")),
            ("y is residual + LayerNorm(x), a pre-LN block's wiring turned around. Here the addition comes first "
             "and the LayerNorm is taken of its result.", _fused(y_of="pre-LN block")),
            ("h is the residual stream as it came in: return the stream after x has been added, which the next "
             "block adds to.", _fused(h_is="residual")),
            ("h is the normalized stream: the residual stream itself is never normalized in a pre-LN model; only "
             "the copy given to the next sublayer (y) is.", _fused(h_is="y")),
            ("the two outputs come back in the wrong order: return `(y, h)`, the normalized stream first.",
             _fused(swap=True)),
            (_UNBIASED, _fused(ddof=1)),
            ("eps is outside the square root: divide by sqrt(var + eps).", _fused(eps_outside=True)),
            ("gamma is ignored: multiply the normalized sum by gamma.", _fused(no_gamma=True)),
            ("beta is ignored: add beta after multiplying by gamma.", _fused(no_beta=True)),
            ("the eps argument is ignored: use the eps you are given.", _fused(default_eps=True)),
            ("the statistics are taken over axis 0 instead of over the last axis: each token is normalized over "
             "its own C features.", _fused(axis=(0,))),
        ],
        tag_rules=[("offset", _CANCEL), ("f16big", _F16)],
    )
    _run(spec, fused_add_layer_norm, _fused_cases(hidden), hidden=hidden)
