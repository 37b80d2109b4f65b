"""Chapter 6's checks: ``check_post_ln``, ``check_pre_ln``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._engine import (
    _Case,
    _rng,
    _rows,
    _run,
    _Spec,
    _tol,
)

# The sublayer and the norm the wiring checks pass, as source text: these checks define their classes from it, and the
# grading server (nbgrader_sandbox.server), which imports nothing of lnkit, defines the same classes from the same text.
CARRIED_SOURCE = '''
import numpy as np


class Linear:
    """A sublayer: z @ w + b, in z's dtype. Counts its calls."""

    def __init__(self, w, b, doc):
        self.w, self.b, self.calls, self.__doc__ = w, b, 0, doc

    @classmethod
    def from_state(cls, state):
        return cls(state["w"], state["b"], state["doc"])

    def state(self):
        return {"w": self.w, "b": self.b, "doc": self.__doc__}

    def __call__(self, z):
        self.calls += 1
        z = np.asarray(z)
        return (z @ self.w + self.b).astype(z.dtype)


class Norm:
    """A norm: LayerNorm over the last axis with a gain and bias, computed in float64, in z's dtype. Counts calls."""

    def __init__(self, gamma, beta, doc):
        self.gamma, self.beta, self.calls, self.__doc__ = gamma, beta, 0, doc

    @classmethod
    def from_state(cls, state):
        return cls(state["gamma"], state["beta"], state["doc"])

    def state(self):
        return {"gamma": self.gamma, "beta": self.beta, "doc": self.__doc__}

    def __call__(self, z):
        self.calls += 1
        z = np.asarray(z)
        zw = z.astype(np.float64)
        mean = zw.mean(axis=-1, keepdims=True)
        var = ((zw - mean) ** 2).mean(axis=-1, keepdims=True)
        y = (zw - mean) / np.sqrt(var + 1e-5) * self.gamma + self.beta
        return y.astype(z.dtype if z.dtype.kind == "f" else np.float64)
'''
_carried: dict = {}
exec(CARRIED_SOURCE, _carried)  # noqa: S102 - our own text, above
Linear, Norm = _carried["Linear"], _carried["Norm"]


def _linear(rng, c, dtype):
    w = (rng.standard_normal((c, c)) / np.sqrt(c)).astype(dtype)
    b = (0.3 * rng.standard_normal(c)).astype(dtype)
    return Linear(w, b, f"sublayer(z) = z @ w + b, a random linear map of {c} features")


def _norm(rng, c):
    gamma, beta = rng.normal(1.0, 0.3, size=c), rng.normal(0.0, 0.3, size=c)
    return Norm(gamma, beta, f"norm(z) = LayerNorm of z's {c} features, with a random gain and bias")


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
        cases.append(_Case((x, _linear(rng, c, dtype), _norm(rng, c)), "", frozenset(), [(t, t)]))
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
            s2, n2 = Linear.from_state(s.state()), Norm.from_state(n.state())  # fresh call counters
            return (np.asarray(forms[form](x, s2, n2)).astype(x.dtype),)

        return f

    spec = _Spec(
        check=check, fname=fname, argnames=("x", "sublayer", "norm"), outnames=("output",),
        section='chapter 6, "Two wirings of one block"',
        expected=answer(expected_form),
        variants=[(msg, answer(form)) for msg, form in variants],
        lnkit_files=("norms.py", "blocked.py", "_torch.py", "gpt2.py"),
    )
    _run(spec, student, _wiring_cases(hidden, seed), hidden=hidden)


def check_pre_ln(pre_ln: Callable, hidden: bool = False) -> None:
    """Check ``pre_ln(x, sublayer, norm)``: ``x + sublayer(norm(x))``."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    _wiring_check("check_pre_ln", "pre_ln", pre_ln, hidden, 8, "pre", [
        ("this is the post-LN wiring: it normalizes the stream after the residual addition. Pre-LN normalizes "
         "only what the sublayer receives and leaves the stream itself untouched "
         "(chapter 6, \"Two wirings of one block\").", "post"),
        ("the residual is missing: the block returns the sublayer's output alone, and the stream x that should "
         "carry on past the block is lost (chapter 6, \"Two wirings of one block\").", "no_residual_pre"),
        ("the norm is applied to the sublayer's output; pre-LN applies it to the sublayer's input (chapter 6, "
         "\"Two wirings of one block\").", "norm_after_sublayer"),
        ("the residual adds norm(x) instead of x: in pre-LN the stream itself is never normalized (chapter 6, "
         "\"Two wirings of one block\").", "residual_from_normed"),
        ("the result is normalized again after the addition; pre-LN leaves the stream alone (chapter 6, "
         "\"Two wirings of one block\").", "norm_both"),
    ])


def check_post_ln(post_ln: Callable, hidden: bool = False) -> None:
    """Check ``post_ln(x, sublayer, norm)``: ``norm(x + sublayer(x))``."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    _wiring_check("check_post_ln", "post_ln", post_ln, hidden, 9, "post", [
        ("this is the pre-LN wiring: it normalizes only the sublayer's input and never the stream. Post-LN "
         "normalizes the stream after the residual addition (chapter 6, \"Two wirings of one block\").", "pre"),
        ("the residual is missing: the stream x does not reach the norm, only the sublayer's output does "
         "(chapter 6, \"Two wirings of one block\").", "no_residual_post"),
        ("the sublayer receives norm(x); in post-LN it receives the stream x as it is, and the only norm comes "
         "after the residual addition (chapter 6, \"Two wirings of one block\").", "norm_both"),
        ("the norm is applied to x before the addition; post-LN normalizes after it (chapter 6, "
         "\"Two wirings of one block\").", "norm_x_only"),
    ])
