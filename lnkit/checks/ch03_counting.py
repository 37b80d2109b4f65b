"""Chapter 3's checks: ``check_ln_applications``, ``check_ln_parameters``, ``check_ln_statistics``."""

from __future__ import annotations

import math
from collections.abc import Callable

from ._engine import (
    _Case,
    _rng,
    _run,
    _Spec,
)

_ARCHS = [  # (name, n_layer, d_model, n_head)
    ("GPT-2 small", 12, 768, 12),
    ("GPT-2 medium", 24, 1024, 16),
    ("GPT-2 large", 36, 1280, 20),
    ("GPT-2 XL", 48, 1600, 25),
    ("a one-block model", 1, 64, 4),
    ("a model with no blocks (only ln_f)", 0, 32, 2),
    ("a small model", 6, 384, 6),
]


def _arch_cases(hidden: bool):
    if not hidden:
        return _ARCHS
    rng = _rng(True, 4)
    out = []
    for _ in range(12):
        n_head = int(rng.integers(2, 17))
        out.append(("random", int(rng.integers(1, 50)), n_head * int(rng.integers(8, 97)), n_head))
    return out


def _int_spec(check, fname, argnames, expected, variants):
    # the right count is what the exercise asks the student to work out: a failure shows what they returned only
    return _Spec(check=check, fname=fname, argnames=argnames, outnames=("count",), expected=expected,
                 variants=variants, integers=True, show_expected=False, section=_SECTION)


_SECTION = 'chapter 3, "Twelve blocks, twenty-five LayerNorms"'
_HEADS = 'chapter 3, "Heads do not enter"'
_APART = "chapter 3, \"Taking '12 × 1024' apart\""
_LN_F = f"you forgot ln_f, the final LayerNorm a pre-LN GPT-2 applies once, after its last block ({_SECTION})."
_LOOK = f"look again at what a GPT-2 block normalizes before its attention and before its MLP ({_SECTION})."
_ONE_PER_BLOCK = "you counted one LayerNorm per block; " + _LOOK


def check_ln_applications(ln_applications: Callable, hidden: bool = False) -> None:
    """Check ``ln_applications(n_layer)``: LayerNorm applications in one forward pass of a pre-LN GPT-2."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    archs = sorted(_arch_cases(hidden), key=lambda a: a[1:])
    cases = [_Case((n,), name, frozenset(), order=i) for i, (name, n, d, h) in enumerate(archs)]
    spec = _int_spec(
        "check_ln_applications", "ln_applications", ("n_layer",), lambda c: (2 * c.args[0] + 1,),
        [
            (_LN_F, lambda c: (2 * c.args[0],)),
            (_ONE_PER_BLOCK, lambda c: (c.args[0] + 1,)),
            ("you counted one LayerNorm per block and forgot the final one, ln_f; " + _LOOK,
             lambda c: (c.args[0],)),
            (f"you counted ln_f once per block; it is applied once, after the last block ({_SECTION}).",
             lambda c: (3 * c.args[0],)),
        ],
    )
    _run(spec, ln_applications, cases, hidden=hidden)


def check_ln_statistics(ln_statistics: Callable, hidden: bool = False) -> None:
    """Check ``ln_statistics(n_layer, batch, seq_len, n_head)``: (mean, variance) pairs in one forward pass."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    rows = []
    for i, (name, n, _width, h) in enumerate(_arch_cases(hidden)):
        for batch, seq in ((1, 1024), (4, 512), (3, 7)) if not hidden else ((1 + i % 5, 17 * (i + 1)),):
            rows.append(_Case((n, batch, seq, h), name, frozenset()))
    rows.sort(key=lambda c: math.prod(c.args) or c.args[1] * c.args[2])
    for i, c in enumerate(rows):
        c.order = i
    a = lambda n: 2 * n + 1  # noqa: E731
    spec = _int_spec(
        "check_ln_statistics", "ln_statistics", ("n_layer", "batch", "seq_len", "n_head"),
        lambda c: (a(c.args[0]) * c.args[1] * c.args[2],),
        [
            ("n_head should play no part, and it multiplies your count: LayerNorm normalizes each token's whole "
             "d_model vector before the Q/K/V projections split it into heads (" + _HEADS + ").",
             lambda c: (a(c.args[0]) * c.args[1] * c.args[2] * c.args[3],)),
            ("this is the 12×1024 count: heads × tokens. Heads play no part in LayerNorm, and the number of "
             "LayerNorms a token goes through is not the number of heads (" + _APART + ").",
             lambda c: (c.args[3] * c.args[2] * c.args[1],)),
            ("this is the 12×1024 count, heads × tokens, for one sequence. Heads play no part in LayerNorm, the "
             "number of LayerNorms a token goes through is not the number of heads, and every sequence of the "
             "batch has its own statistics (" + _APART + ").",
             lambda c: (c.args[3] * c.args[2],)),
            ("this is the blocks × tokens count (n_layer × batch × seq_len): one statistic per token per block. "
             "A token's statistics are taken once per LayerNorm it goes through, and a block is not one "
             f"LayerNorm ({_SECTION}).", lambda c: (c.args[0] * c.args[1] * c.args[2],)),
            (_LN_F, lambda c: (2 * c.args[0] * c.args[1] * c.args[2],)),
            ("the batch size is missing: every sequence in the batch has its own statistics (LayerNorm never mixes "
             "sequences; chapter 3, \"Times the batch\").", lambda c: (a(c.args[0]) * c.args[2],)),
            (_ONE_PER_BLOCK, lambda c: ((c.args[0] + 1) * c.args[1] * c.args[2],)),
        ],
    )
    _run(spec, ln_statistics, rows, hidden=hidden)


def check_ln_parameters(ln_parameters: Callable, hidden: bool = False) -> None:
    """Check ``ln_parameters(n_layer, d_model)``: learned LayerNorm parameters (gains and biases) of a pre-LN GPT-2."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    archs = sorted(_arch_cases(hidden), key=lambda a: a[1:])
    cases = [_Case((n, d), name, frozenset(), order=i) for i, (name, n, d, h) in enumerate(archs)]
    a = lambda n: 2 * n + 1  # noqa: E731
    spec = _int_spec(
        "check_ln_parameters", "ln_parameters", ("n_layer", "d_model"), lambda c: (a(c.args[0]) * 2 * c.args[1],),
        [
            ("you counted only the gains (or only the biases): every LayerNorm holds both, gamma and beta.",
             lambda c: (a(c.args[0]) * c.args[1],)),
            (_LN_F, lambda c: (2 * c.args[0] * 2 * c.args[1],)),
            (_ONE_PER_BLOCK, lambda c: ((c.args[0] + 1) * 2 * c.args[1],)),
            (_LN_F + " You also counted only one of gamma and beta: each LayerNorm holds both.",
             lambda c: (2 * c.args[0] * c.args[1],)),
        ],
    )
    _run(spec, ln_parameters, cases, hidden=hidden)
