"""Chapter 7's checks: ``check_layer_norm_backward``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._engine import (
    _array_cases,
    _Case,
    _in_dtype,
    _part,
    _rng,
    _run,
    _Spec,
)
from .ch01_layernorm import _CANCEL, _F16


def _backward64(dout, x, gamma, eps, *, drop=(), ddof=0, eps_outside=False, no_gamma=False, x_for_dgamma=False,
                sum_axis0=False, swap=False):
    xw = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dout, dtype=np.float64)
    g64 = np.asarray(gamma, dtype=np.float64)
    c = xw.shape[-1]
    mean = xw.mean(axis=-1, keepdims=True)
    var = ((xw - mean) ** 2).sum(axis=-1, keepdims=True) / (c - ddof)
    rstd = 1.0 / (np.sqrt(var) + eps) if eps_outside else 1.0 / np.sqrt(var + eps)
    xhat = (xw - mean) * rstd
    g = dy if no_gamma else dy * g64
    dx = g.copy()
    if "mean" not in drop:
        dx = dx - g.mean(axis=-1, keepdims=True)
    if "xhat" not in drop:
        dx = dx - xhat * (g * xhat).mean(axis=-1, keepdims=True)
    dx = dx * rstd
    lead = (0,) if sum_axis0 else tuple(range(xw.ndim - 1))
    dbeta = dy.sum(axis=lead)
    dgamma = (dy * (xw if x_for_dgamma else xhat)).sum(axis=lead)
    out = _in_dtype(np.asarray(x))
    pout = _in_dtype(np.asarray(gamma))
    if swap:
        dgamma, dbeta = dbeta, dgamma
    return dx.astype(out), dgamma.astype(pout), dbeta.astype(pout)


_DERIVE = 'Derive it from the chain rule: chapter 7, "Deriving the gradients".'


def _backward_cases(hidden: bool) -> list[_Case]:
    rng = _rng(hidden, 10)
    out = []
    for c in _array_cases(rng, hidden, params=True, eps_arg=True):
        x, gamma, _, eps = c.args
        dout = rng.standard_normal(x.shape).astype(x.dtype)
        exp = _backward64(dout, x, gamma, eps)
        tols = []
        base = c.tol[0][0]
        # dx is a difference of terms of size |dout * gamma| / sigma, whatever its own size: its absolute tolerance
        # follows those terms (on float16 rows of values in the thousands they are about 1e-3, and a fixed floor of
        # 1 would let dx = 0 pass; on a row of two features dx nearly cancels, and its own size would demand more
        # digits than float32 keeps). dgamma and dbeta follow their own size.
        x64 = x.astype(np.float64)
        rstd = 1.0 / np.sqrt(x64.var(axis=-1, keepdims=True) + eps) if x.size else np.ones(1)
        terms = float(np.abs(dout.astype(np.float64) * gamma.astype(np.float64) * rstd).max(initial=0.0))
        for i, e in enumerate(exp):
            scale = (terms if i == 0 else float(np.abs(e.astype(np.float64)).max(initial=0.0))) or 1.0
            tols.append((base * 10, base * 10 * scale))
        out.append(_Case((dout, x, gamma, eps), c.desc, c.tags, tols))
    return out


def _autograd_spy(frame, event, arg):
    if event == "call":
        code = frame.f_code
        path = code.co_filename.replace("\\", "/")
        if code.co_name in ("backward", "grad") and (path.endswith("torch/autograd/__init__.py")
                                                     or path.endswith("torch/_tensor.py")):
            return "torch's autograd (" + code.co_name + ")"
    return None


def check_layer_norm_backward(layer_norm_backward: Callable, hidden: bool = False, outputs: str = "all",
                              part: str = "all") -> None:
    """Check ``layer_norm_backward(dout, x, gamma, eps=1e-5) -> (dx, dgamma, dbeta)``.

    ``outputs="dx"`` compares only dx, ``outputs="params"`` only (dgamma, dbeta), and ``part="contract"`` only the
    contract (shapes, dtypes, inputs left unchanged, no reference called): the graded notebook scores them
    separately.
    """
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    select = {"all": None, "dx": (0,), "params": (1, 2)}[outputs]
    contract = _part(part, ("all", "contract")) == "contract"

    def v(**kw):
        def f(case):
            if kw.get("sum_axis0") and case.args[1].ndim < 3:
                return None
            return _backward64(*case.args, **kw)

        return f

    spec = _Spec(
        section='chapter 7, "Deriving the gradients"',
        check="check_layer_norm_backward",
        fname="layer_norm_backward",
        argnames=("dout", "x", "gamma", "eps"),
        outnames=("dx", "dgamma", "dbeta"),
        expected=v(),
        variants=[
            ("dx treats the mean and the variance as constants: it keeps only the direct path, dout · gamma / std. "
             "Both statistics depend on every feature of the row, so each feature's gradient also flows back "
             "through the mean and through the variance: one more term for each. " + _DERIVE,
             v(drop=("mean", "xhat"))),
            ("dx is missing the term that comes through the variance (the one through the mean is there). "
             + _DERIVE, v(drop=("xhat",))),
            ("dx is missing the term that comes through the mean (the one through the variance is there). "
             + _DERIVE, v(drop=("mean",))),
            ("gamma is missing from dx: in the forward pass gamma multiplies the normalized values, so the gradient "
             "that reaches them is scaled by gamma too.", v(no_gamma=True)),
            ("the variance is the unbiased one (dividing by C - 1); the forward pass divides by C.", v(ddof=1)),
            ("eps is outside the square root: the forward pass divides by sqrt(var + eps), not by sqrt(var) + eps; the "
             "two differ most where the variance is near eps or below it, as in the input below.",
             v(eps_outside=True), "tiny"),
            ("dgamma is computed from the raw x; in the forward pass gamma does not multiply x itself (chapter 7, "
             "\"The forward pass, as the backward pass sees it\").", v(x_for_dgamma=True)),
            ("dgamma and dbeta are summed over axis 0 only; sum them over every leading axis (every token of every "
             "sequence) so that each has shape (C,).", v(sum_axis0=True)),
            ("dgamma and dbeta come back swapped: return (dx, dgamma, dbeta).", v(swap=True)),
        ],
        tag_rules=[("offset", _CANCEL), ("f16big", _F16)],
        # in the student's kernel; when grading, torch is not granted to 07, so any call of it is refused there
        spy_extra=_autograd_spy,
        select=select,
        contract_only=contract,
    )
    _run(spec, layer_norm_backward, _backward_cases(hidden), hidden=hidden)
