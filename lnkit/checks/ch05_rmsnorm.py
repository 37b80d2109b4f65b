"""Chapter 5's checks: ``check_layer_norm_via_rms``, ``check_rms_norm``."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._engine import (
    _rng,
    _Case,
    _Spec,
    _array_cases,
    _fail,
    _in_dtype,
    _ln64,
    _run,
    _tol,
)
from .ch01_layernorm import _CANCEL, _F16, _ln_expected, _ln_variant


def _rms64(x, gamma, eps, *, centre=False, eps_outside=False, no_sqrt=False, axis=-1):
    xw = np.asarray(x, dtype=np.float64)
    if centre:
        xw = xw - xw.mean(axis=axis, keepdims=True)
    ms = (xw * xw).mean(axis=axis, keepdims=True)
    if no_sqrt:
        y = xw / (ms + eps)
    elif eps_outside:
        y = xw / (np.sqrt(ms) + eps)
    else:
        y = xw / np.sqrt(ms + eps)
    if gamma is not None:
        y = y * np.asarray(gamma, dtype=np.float64)
    return y.astype(_in_dtype(np.asarray(x)))


def _rms_cases(hidden: bool, with_beta: bool, eps: float) -> list[_Case]:
    rng = _rng(hidden, 7 if with_beta else 6)
    out = []
    for c in _array_cases(rng, hidden, params=True, eps_arg=True):
        x, gamma, beta, e = c.args
        if "constant" in c.tags and x.ndim >= 2 and x.shape[-2] > 2 and not with_beta:
            x = x.copy()
            x[..., 2, :] = 0  # an all-zero row: its mean square is 0
        e = eps if e == 1e-5 else e
        args = (x, gamma, beta, e) if with_beta else (x, gamma, e)
        tol = c.tol
        if not with_beta:  # no centring, so no cancellation: rows far from zero are easy
            t = _tol(x.dtype)
            tol = [(t, t)]
        out.append(_Case(args, c.desc, c.tags, tol))
    return out


def check_rms_norm(rms_norm: Callable, hidden: bool = False) -> None:
    """Check ``rms_norm(x, gamma, eps=1e-6)``: ``x / sqrt(mean(x**2) + eps) * gamma`` over the last axis."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames

    def v(**kw):
        def f(case):
            x, gamma, eps = case.args
            opts = dict(kw)
            if opts.pop("no_gamma", False):
                gamma = None
            if opts.pop("default_eps", False):
                if eps == 1e-6:
                    return None
                eps = 1e-6
            if opts.get("axis") == 0 and x.ndim < 2:
                return None
            return (_rms64(x, gamma, eps, **opts),)

        return f

    spec = _Spec(
        section='chapter 5, "The formula"',
        check="check_rms_norm",
        fname="rms_norm",
        argnames=("x", "gamma", "eps"),
        outnames=("output",),
        expected=v(),
        variants=[
            ("x is centred (the mean is subtracted): RMSNorm does not centre. It divides x itself by the root of the "
             "mean of x², that is sqrt(mean(x**2) + eps).", v(centre=True)),
            ("eps is outside the square root: divide by sqrt(mean(x**2) + eps).", v(eps_outside=True)),
            ("the square root is missing: divide by sqrt(mean(x**2) + eps), not by mean(x**2) + eps.",
             v(no_sqrt=True)),
            ("gamma is ignored: multiply by gamma (one gain per feature).", v(no_gamma=True)),
            ("the eps argument is ignored: use the eps you are given (RMSNorm's default is 1e-6).",
             v(default_eps=True)),
            ("the mean square is taken over axis 0 instead of over the last axis (each token's C features).",
             v(axis=0)),
            ("eps is missing, so an all-zero row gives NaN: its mean square is 0, and eps inside the square root is "
             "what prevents 0 / 0.", lambda case: (_rms64(case.args[0], case.args[1], 0.0),)),
        ],
        tag_rules=[("f16big", _F16)],
    )
    _run(spec, rms_norm, _rms_cases(hidden, False, 1e-6))


# A correct rms_norm, as source text: check_layer_norm_via_rms puts it in place of the student's rms_norm while it runs
# (in the kernel, from this text; out of it, the grading server defines it from the same text in a process used for
# nothing else, so it can never stand in for the student's own rms_norm when that one is graded).
STAND_IN_SOURCE = '''
import numpy as np


def rms_norm(x, gamma=None, eps=1e-6):
    x = np.asarray(x)
    xw = x.astype(np.float64)
    y = xw / np.sqrt((xw * xw).mean(axis=-1, keepdims=True) + eps)
    if gamma is not None:
        y = y * np.asarray(gamma, dtype=np.float64)
    return y.astype(x.dtype if x.dtype.kind == "f" else np.float64)
'''


def _stand_in(name: str, used: dict) -> Callable:
    """The stand-in of that name; it records in ``used`` that it was called."""
    if name != "rms_norm":
        raise ValueError(f"stand_in: no stand-in for {name!r}; expected 'rms_norm'")
    namespace: dict = {}
    exec(STAND_IN_SOURCE, namespace)  # noqa: S102 - our own text, above
    correct = namespace["rms_norm"]

    def rms_norm(x, gamma=None, eps=1e-6):
        used["rms_norm"] = True
        return correct(x, gamma, eps)

    return rms_norm


def check_layer_norm_via_rms(layer_norm_via_rms: Callable, hidden: bool = False) -> None:
    """Check ``layer_norm_via_rms(x, gamma, beta, eps=1e-5)``: LayerNorm computed as rms_norm(x - mean) + beta.

    While it runs, the ``rms_norm`` the function calls (a global of its module or notebook) is replaced by a correct
    one, so that this check grades the centring, the eps passed on and the bias, not the student's rms_norm again.
    """
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    called = {"rms_norm": False}

    def watch(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "rms_norm":
            called["rms_norm"] = True
        return None

    rms_norm = _stand_in("rms_norm", called)  # a correct rms_norm, standing in for the student's during this check
    spec = _Spec(
        section='chapter 5, "LayerNorm is RMSNorm on the centred input"',
        check="check_layer_norm_via_rms",
        fname="layer_norm_via_rms",
        argnames=("x", "gamma", "beta", "eps"),
        outnames=("output",),
        expected=_ln_expected,
        variants=[
            ("x is not centred before the RMSNorm: LayerNorm = RMSNorm(x − mean(x)) · gamma + beta. Subtract each "
             "row's mean first.", lambda c: ((_rms64(c.args[0], c.args[1], c.args[3]).astype(np.float64)
                                              + c.args[2]).astype(_in_dtype(c.args[0])),)),
            ("beta is missing: after the RMSNorm of the centred x (with gain gamma), add beta.",
             _ln_variant(no_beta=True)),
            ("gamma is ignored: pass gamma to your rms_norm.", _ln_variant(no_gamma=True)),
            ("gamma and beta are swapped.", _ln_variant(swap=True)),
            ("eps is outside the square root.", _ln_variant(eps_outside=True)),
            ("the eps argument is not passed on: call rms_norm(x − mean, gamma, eps) with the eps you were given "
             "(rms_norm's own default is 1e-6, LayerNorm's 1e-5).",
             lambda c: (_ln64(c.args[0], c.args[1], c.args[2], 1e-6),)),
            ("the statistics are taken over the wrong axis: centre each row over its last axis.",
             _ln_variant(axis=(0,))),
        ],
        tag_rules=[("offset", _CANCEL), ("f16big", _F16)],
        spy_extra=watch,
        stand_in=("rms_norm",),
        remote_info=lambda info: called.update(rms_norm=called["rms_norm"] or "rms_norm" in info["stand_in_used"]),
    )
    # Grade this function on its own: while the check runs, the name rms_norm it calls is a correct RMSNorm, so a
    # mistake in the student's rms_norm is counted once, by check_rms_norm, and not twice.
    namespace = getattr(layer_norm_via_rms, "__globals__", None)
    swapped = isinstance(namespace, dict) and callable(namespace.get("rms_norm"))
    if swapped:
        theirs, namespace["rms_norm"] = namespace["rms_norm"], rms_norm
    try:
        _run(spec, layer_norm_via_rms, _rms_cases(hidden, True, 1e-5))
    finally:
        if swapped:
            namespace["rms_norm"] = theirs
    if not called["rms_norm"]:
        _fail(
            "check_layer_norm_via_rms: the values are right, but layer_norm_via_rms never calls a function named "
            "rms_norm. The exercise is to compute LayerNorm through your rms_norm: centre x, call rms_norm, add beta."
        )
