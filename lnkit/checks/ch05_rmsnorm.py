"""Chapter 5's checks: ``check_layer_norm_via_rms``, ``check_rms_norm``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._engine import (
    _array_cases,
    _Case,
    _in_dtype,
    _rng,
    _run,
    _Spec,
    _tol,
)
from .ch01_layernorm import _CANCEL, _F16, _ln_expected


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
    _run(spec, rms_norm, _rms_cases(hidden, False, 1e-6), hidden=hidden)


# The stand-in for the student's rms_norm while check_layer_norm_via_rms runs, as source text: a true RMSNorm whose
# output is multiplied by a factor the check draws, deliberately not an RMSNorm. In the kernel the check makes it from
# this text; out of it, the grading server makes it from the same text, per call, in a process used for nothing else
# (so it never exists where the student's own rms_norm is graded).
STAND_IN_SOURCE = '''
import numpy as np


def make_rms_norm(factor):
    """An RMSNorm whose output is multiplied by factor."""

    def rms_norm(x, gamma=None, eps=1e-6):
        x = np.asarray(x)
        xw = x.astype(np.float64)
        y = xw / np.sqrt((xw * xw).mean(axis=-1, keepdims=True) + eps)
        if gamma is not None:
            y = y * np.asarray(gamma, dtype=np.float64)
        return (factor * y).astype(x.dtype if x.dtype.kind == "f" else np.float64)

    return rms_norm
'''


def _stand_in(factor: float) -> Callable:
    """The stand-in rms_norm, made from STAND_IN_SOURCE as the grading server makes it."""
    namespace: dict = {}
    exec(STAND_IN_SOURCE, namespace)  # noqa: S102 - our own text, above
    return namespace["make_rms_norm"](factor)


def _via_stand_in(x, gamma, beta, eps, factor, centre_axis=-1):
    """What layer_norm_via_rms returns when it centres x over centre_axis (None: not at all), calls the stand-in and
    adds beta: factor · RMSNorm(x − mean) · gamma + beta, in x's floating dtype."""
    xw = np.asarray(x, dtype=np.float64)
    if centre_axis is not None:
        xw = xw - xw.mean(axis=centre_axis, keepdims=True)
    y = factor * _rms64(xw, gamma, eps)
    if beta is not None:
        y = y + np.asarray(beta, dtype=np.float64)
    return y.astype(_in_dtype(np.asarray(x)))


def check_layer_norm_via_rms(layer_norm_via_rms: Callable, hidden: bool = False) -> None:
    """Check ``layer_norm_via_rms(x, gamma, beta, eps=1e-5)``: LayerNorm computed as rms_norm(x - mean) + beta.

    While it runs, the name ``rms_norm`` the function calls (a global of its module or notebook) is a stand-in: a true
    RMSNorm multiplied by a factor drawn with the cases. A function that centres x, calls rms_norm and adds beta gives
    factor · RMSNorm(x − mean) · gamma + beta, which is what this check expects; one that computes LayerNorm another
    way gives LayerNorm itself and fails. So the rule is decided on values alone, in the kernel and out of it, and
    the student's own rms_norm is graded once, by check_rms_norm.
    """
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    factor = round(float(_rng(hidden, 14).uniform(1.5, 2.5)), 3)
    times = f"{factor:g}" if not hidden else "a factor drawn with the hidden cases"  # a hidden one is not said
    cases = []
    for c in _rms_cases(hidden, True, 1e-5):
        note = f"rms_norm stands in as a true RMSNorm times {times}"
        tol = [(rtol, atol * factor) for rtol, atol in c.tol] if c.tol else c.tol
        cases.append(_Case(c.args, f"{c.desc}; {note}" if c.desc else note, c.tags, tol))

    def via(centre_axis=-1, gamma="gamma", beta="beta", eps=None):
        def f(case):
            x, g, b, e = case.args
            params = {"gamma": g, "beta": b, None: None}
            if eps is not None and e == eps:
                return None  # the mistake changes nothing here
            if centre_axis == 0 and np.ndim(x) < 2:
                return None
            return (_via_stand_in(x, params[gamma], params[beta], e if eps is None else eps, factor, centre_axis),)

        return f

    spec = _Spec(
        section='chapter 5, "LayerNorm is RMSNorm on the centred input"',
        check="check_layer_norm_via_rms",
        fname="layer_norm_via_rms",
        argnames=("x", "gamma", "beta", "eps"),
        outnames=("output",),
        expected=via(),
        variants=[
            (f"layer_norm_via_rms must compute its result by calling your rms_norm on the centred input. While this "
             f"check runs, rms_norm is a stand-in that returns a true RMSNorm times {times}, and your result is a "
             f"LayerNorm that does not go through it (computed directly, or through a copy of rms_norm kept under "
             f"another name). Centre x, call rms_norm(x − mean, gamma, eps) by that name, and add beta.",
             _ln_expected),
            ("x is not centred before the RMSNorm: LayerNorm = RMSNorm(x − mean(x)) · gamma + beta. Subtract each "
             "row's mean first.", via(centre_axis=None)),
            ("beta is missing: after the RMSNorm of the centred x (with gain gamma), add beta.", via(beta=None)),
            ("gamma is ignored: pass gamma to your rms_norm.", via(gamma=None)),
            ("gamma and beta are swapped.", via(gamma="beta", beta="gamma")),
            ("the eps argument is not passed on: call rms_norm(x − mean, gamma, eps) with the eps you were given "
             "(rms_norm's own default is 1e-6, LayerNorm's 1e-5).", via(eps=1e-6)),
            ("the statistics are taken over the wrong axis: centre each row over its last axis.", via(centre_axis=0)),
        ],
        tag_rules=[("offset", _CANCEL), ("f16big", _F16)],
        stand_in={"rms_norm": (factor,)},
    )
    # In the kernel, the stand-in takes the name rms_norm in the function's own globals for the check's duration (out
    # of it, the grading server does the same, per call, from spec.stand_in); a function with no globals of its own
    # keeps whatever it calls, and is graded on what that gives.
    namespace = getattr(layer_norm_via_rms, "__globals__", None)
    swapped = isinstance(namespace, dict)
    if swapped:
        theirs = namespace.get("rms_norm", _ABSENT)
        namespace["rms_norm"] = _stand_in(factor)
    try:
        _run(spec, layer_norm_via_rms, cases, hidden=hidden)
    finally:
        if swapped:
            if theirs is _ABSENT:
                namespace.pop("rms_norm", None)
            else:
                namespace["rms_norm"] = theirs


_ABSENT = object()  # rms_norm was not defined: it is taken away again after the check
