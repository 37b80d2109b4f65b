"""Chapter 6's checks: ``check_post_ln``, ``check_pre_ln``."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._engine import (
    _rng,
    _Case,
    _Spec,
    _ln64,
    _rows,
    _run,
    _tol,
)


class _Linear:
    """A sublayer: z @ w + b, in z's dtype. Counts its calls."""

    def __init__(self, rng, c, dtype):
        self.w = (rng.standard_normal((c, c)) / np.sqrt(c)).astype(dtype)
        self.b = (0.3 * rng.standard_normal(c)).astype(dtype)
        self.calls = 0
        self.__doc__ = f"sublayer(z) = z @ w + b, a random linear map of {c} features"

    def __call__(self, z):
        self.calls += 1
        return (np.asarray(z) @ self.w + self.b).astype(np.asarray(z).dtype)


class _Norm:
    """A norm: LayerNorm over the last axis with a random gain and bias, in z's dtype. Counts its calls."""

    def __init__(self, rng, c, dtype):
        self.gamma = rng.normal(1.0, 0.3, size=c)
        self.beta = rng.normal(0.0, 0.3, size=c)
        self.calls = 0
        self.__doc__ = f"norm(z) = LayerNorm of z's {c} features, with a random gain and bias"

    def __call__(self, z):
        self.calls += 1
        z = np.asarray(z)
        return _ln64(z, self.gamma, self.beta, 1e-5)


def _wiring_cases(hidden: bool, seed: int) -> list[_Case]:
    rng = _rng(hidden, seed)
    shapes = [((4,), np.float64), ((3, 4), np.float64), ((2, 3, 8), np.float64), ((0, 6), np.float64),
              ((2, 5, 16), np.float32), ((3, 8), np.float16)]
    if hidden:
        shapes = [(tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(0, 3))))
                   + (int(rng.integers(2, 20)),), [np.float64, np.float32][int(rng.integers(0, 2))])
                  for _ in range(8)]
    cases = []
    for shape, dtype in shapes:
        c = shape[-1]
        x = _rows(rng, shape, dtype, 0.5, 3.0)
        t = _tol(dtype, 10.0)
        cases.append(_Case((x, _Linear(rng, c, dtype), _Norm(rng, c, dtype)), "", frozenset(), [(t, t)]))
    return cases


def _wiring_check(check, fname, student, hidden, seed, expected_form, variants):
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    forms = {
        "pre": lambda x, s, n: x + s(n(x)),
        "post": lambda x, s, n: n(x + s(x)),
        "no_residual_pre": lambda x, s, n: s(n(x)),
        "no_residual_post": lambda x, s, n: n(s(x)),
        "norm_after_sublayer": lambda x, s, n: x + n(s(x)),
        "residual_from_normed": lambda x, s, n: n(x) + s(n(x)),
        "norm_both": lambda x, s, n: n(x + s(n(x))),
        "norm_x_only": lambda x, s, n: n(x) + s(x),
    }

    def answer(form):
        def f(case):
            x, s, n = case.args
            s2, n2 = _Linear.__new__(_Linear), _Norm.__new__(_Norm)
            s2.__dict__.update(s.__dict__)
            n2.__dict__.update(n.__dict__)
            return (np.asarray(forms[form](x, s2, n2)).astype(x.dtype),)

        return f

    spec = _Spec(
        check=check, fname=fname, argnames=("x", "sublayer", "norm"), outnames=("output",),
        expected=answer(expected_form),
        variants=[(msg, answer(form)) for msg, form in variants],
        lnkit_files=("norms.py", "_torch.py", "gpt2.py"),
    )
    _run(spec, student, _wiring_cases(hidden, seed))


def check_pre_ln(pre_ln: Callable, hidden: bool = False) -> None:
    """Check ``pre_ln(x, sublayer, norm)``: ``x + sublayer(norm(x))``."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    _wiring_check("check_pre_ln", "pre_ln", pre_ln, hidden, 8, "pre", [
        ("this is the post-LN wiring, norm(x + sublayer(x)). Pre-LN normalizes only the sublayer's input and "
         "adds the result to the untouched x: x + sublayer(norm(x)).", "post"),
        ("the residual is missing: pre-LN returns x + sublayer(norm(x)), the stream x plus the sublayer's output.",
         "no_residual_pre"),
        ("the norm is applied to the sublayer's output; pre-LN applies it to the sublayer's input: "
         "x + sublayer(norm(x)).", "norm_after_sublayer"),
        ("the residual adds norm(x) instead of x: in pre-LN the stream itself is never normalized, return "
         "x + sublayer(norm(x)).", "residual_from_normed"),
        ("the result is normalized again; pre-LN leaves the stream alone: x + sublayer(norm(x)).", "norm_both"),
    ])


def check_post_ln(post_ln: Callable, hidden: bool = False) -> None:
    """Check ``post_ln(x, sublayer, norm)``: ``norm(x + sublayer(x))``."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    _wiring_check("check_post_ln", "post_ln", post_ln, hidden, 9, "post", [
        ("this is the pre-LN wiring, x + sublayer(norm(x)). Post-LN adds first and normalizes the sum: "
         "norm(x + sublayer(x)).", "pre"),
        ("the residual is missing: post-LN returns norm(x + sublayer(x)).", "no_residual_post"),
        ("the sublayer receives norm(x); in post-LN it receives x, and the norm comes after the residual "
         "addition: norm(x + sublayer(x)).", "norm_both"),
        ("the norm is applied to x before the addition; post-LN normalizes the sum: norm(x + sublayer(x)).",
         "norm_x_only"),
    ])
