"""Chapter 10's checks: ``check_fold_into_linear``, ``check_add_layer_norm_traffic``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._engine import (
    _Case,
    _in_dtype,
    _rng,
    _run,
    _Spec,
    _tol,
)

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


# --- add_layer_norm_traffic(rows, features, itemsize, fused, write_allocate) -> bytes -------------------------------

_FUSED = 'chapter 10, "Fused residual add and LayerNorm"'


def _traffic_cases(hidden: bool) -> list[_Case]:
    if not hidden:
        shapes = [  # (rows, features, itemsize, desc)
            (1, 1, 4, "one row of one float32 feature"),
            (3, 5, 8, "3 rows of 5 float64 features"),
            (2, 768, 2, "2 tokens of GPT-2 small in float16"),
            (4, 16, 1, "4 rows of 16 one-byte values (int8 or float8)"),
            (0, 64, 4, "no rows (an empty batch)"),
            (1024, 768, 4, "one 1024-token sequence of GPT-2 small, float32"),
            (16384, 768, 4, "the chapter's 16384 x 768 float32 tensor"),
        ]
    else:
        rng = _rng(True, 15)
        shapes = [(int(rng.integers(0, 5000)), int(rng.integers(1, 4097)), int(rng.choice([1, 2, 4, 8])), "random")
                  for _ in range(6)]
    cases = []
    for rows, feats, item, desc in shapes:
        for fused in (False, True):
            for wa in (False, True):
                how = f"{'fused' if fused else 'unfused'}, {'with' if wa else 'without'} write-allocate"
                cases.append(_Case((rows, feats, item, fused, wa), f"{desc}; {how}", frozenset(
                    {"fused" if fused else "unfused"} | ({"write-allocate"} if wa else set()))))
    for i, c in enumerate(sorted(cases, key=lambda c: (c.args[0] * c.args[1] * c.args[2], c.args[3], c.args[4]))):
        c.order = i
    return cases


def _traffic(h_written=True, h_reread="unfused", wa_on="writes", params="per pass", itemsize=True):
    """Bytes moved by the residual add and the LayerNorm after it, with switchable mistakes.

    Full-size arrays (rows x features): x and r read, h written, y written; the unfused version reads h back.
    gamma and beta (features values each) are read once by the pass that needs them. With write-allocate every array
    written is first read in."""

    def f(case):
        rows, feats, item, fused, wa = case.args
        n = rows * feats
        reads = 2 * n + (n if (not fused if h_reread == "unfused" else h_reread == "always") else 0)
        writes = (2 * n if h_written or not fused else n)
        small = {"per pass": 2 * feats, "forgotten": 0, "per row": 2 * n,
                 "both passes": 2 * feats * (1 if fused else 2)}[params]
        allocate = {"writes": writes, "reads": reads + small, "everything": reads + small + writes,
                    "always": writes, "never": 0}[wa_on]
        if wa_on == "always" or wa:
            reads += allocate
        return ((reads + writes + small) * (item if itemsize else 1),)

    return f


def check_add_layer_norm_traffic(add_layer_norm_traffic: Callable, hidden: bool = False) -> None:
    """Check ``add_layer_norm_traffic(rows, features, itemsize, fused, write_allocate) -> bytes``: the bytes that the
    residual addition ``h = x + r`` and the LayerNorm ``y = LN(h)`` move to and from main memory, unfused (two
    passes) or fused (one)."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    spec = _Spec(
        check="check_add_layer_norm_traffic",
        fname="add_layer_norm_traffic",
        argnames=("rows", "features", "itemsize", "fused", "write_allocate"),
        outnames=("bytes",),
        expected=_traffic(),
        variants=[
            ("your fused count does not write h. Fusing saves reading h back, not writing it: h is the new residual "
             "stream, which the next sublayer's output is added to (and which the backward pass reads), so it has "
             f"to reach memory ({_FUSED}).", _traffic(h_written=False)),
            ("your fused count still reads h back. In the fused kernel each block of h is still in cache when the "
             f"LayerNorm needs it: that read is the transfer fusion saves ({_FUSED}).", _traffic(h_reread="always")),
            ("your unfused count does not read h back: the separate LayerNorm pass starts from h in main memory, "
             f"which the addition pass wrote there ({_FUSED}).", _traffic(h_reread="never")),
            ("with write_allocate=True each array a pass writes is first read in, one more read of its size; your "
             f"count leaves that out ({_FUSED}).", _traffic(wa_on="never")),
            ("you add write-allocate's reads even when write_allocate is False (streaming stores skip them).",
             _traffic(wa_on="always")),
            ("write-allocate adds a read for each array written, not for each array read "
             f"({_FUSED}).", _traffic(wa_on="reads")),
            ("write-allocate adds a read for each array written, and only for those: your count adds one for "
             f"every transfer ({_FUSED}).", _traffic(wa_on="everything")),
            ("gamma and beta are left out: the LayerNorm reads them, features values each.",
             _traffic(params="forgotten")),
            ("gamma and beta hold one value per feature, not one per element: a pass reads them once "
             "(2 x features values), whatever the number of rows.", _traffic(params="per row")),
            ("your unfused count reads gamma and beta in both passes: only the LayerNorm pass uses them.",
             _traffic(params="both passes")),
            ("this is a count of values, not of bytes: multiply by itemsize, the bytes per value.",
             _traffic(itemsize=False)),
        ],
        integers=True,
        show_expected=False,
        section=_FUSED,
    )
    _run(spec, add_layer_norm_traffic, _traffic_cases(hidden), hidden=hidden)
