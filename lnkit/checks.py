"""The checks the graded exercises call: ``from lnkit.checks import check_layer_norm``, then ``check_layer_norm(layer_norm)``.

Each check runs the student's function on many inputs (shapes ``(C,)``, ``(T, C)``, ``(B, T, C)``, zero rows;
float16, float32, float64; constant rows; rows far from zero; tiny variances), compares every answer with a reference
computed here, and on the first problem raises ``AssertionError`` with a message that names the mistake (found by
comparing the student's answer with the answers of known wrong implementations) and the smallest input that shows it.
On success it prints one line, such as ``check_layer_norm: 15 cases passed``.

``hidden=True`` runs other, randomized cases (another seed, other shapes and eps) so that answers hard-coded for the
visible cases fail.

The checks never write to stderr (nbgrader scores any stderr output as a failure): warnings are silenced while they
run. While the student's function runs, a profiler watches for calls into lnkit's reference implementations and
torch's normalization functions, and a call fails the check ("you called lnkit.layer_norm instead of writing it").

The reference answers are computed here, in float64, for every function (lnkit's public API covers chapters 1, 2,
5 and 7 only, and a check should not trust the code it is part of). This module imports NumPy only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "check_layer_norm_stats",
    "check_layer_norm",
    "check_normalize_over",
    "check_count_statistics",
    "check_ln_applications",
    "check_ln_statistics",
    "check_ln_parameters",
    "check_fit_gain_bias",
    "check_rms_norm",
    "check_layer_norm_via_rms",
    "check_pre_ln",
    "check_post_ln",
    "check_layer_norm_backward",
    "check_running_stats",
]

VISIBLE_SEED = 20160721  # Ba, Kiros and Hinton put "Layer Normalization" on arXiv on 21 July 2016
HIDDEN_SEED = 1706_03762  # "Attention is all you need"

# Relative accuracy we demand of an answer, by the dtype it is returned in (float16 answers are rounded to ~1e-3).
_BASE_TOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-5, np.dtype(np.float16): 4e-3}


# --- cases --------------------------------------------------------------------------------------------------------


@dataclass
class _Case:
    args: tuple  # positional arguments, in the order of `argnames`
    desc: str = ""  # what is special about this input, in words
    tags: frozenset = frozenset()  # "constant", "offset", "tiny", "f16big", "eps", "zero" ...
    tol: Sequence[tuple[float, float]] | None = None  # (rtol, atol) per output
    kwargs: dict = field(default_factory=dict)
    order: int | None = None  # where the check wants this case; by default, by the size of its arrays

    @property
    def size(self) -> tuple:
        if self.order is not None:
            return (self.order,)
        arrays = [a for a in self.args if isinstance(a, np.ndarray)]
        n = sum(a.size for a in arrays)
        nd = max((a.ndim for a in arrays), default=0)
        return (n, nd, len(self.desc))


def _tol(dtype, cond: float = 1.0) -> float:
    return _BASE_TOL.get(np.dtype(dtype), 1e-9) * cond


# --- watching for calls to the reference --------------------------------------------------------------------------

_TORCH_PY = {"layer_norm", "rms_norm", "group_norm", "batch_norm", "instance_norm", "local_response_norm"}
_TORCH_C = {"layer_norm", "native_layer_norm", "rms_norm", "_fused_rms_norm", "group_norm", "native_group_norm",
            "batch_norm", "native_batch_norm", "instance_norm"}


def _lnkit_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


class _Spy:
    """While active, records the first call the student's code makes to a forbidden function.

    A profiler (``sys.setprofile``) sees every Python call by its code object and every C call by the function
    object, so an alias such as ``from lnkit import layer_norm as ln`` or ``F.layer_norm`` is caught too.
    """

    def __init__(self, lnkit_files: Sequence[str], extra: Callable[[Any, str, Any], str | None] | None = None):
        here = _lnkit_dir()
        self.files = {os.path.join(here, f) for f in lnkit_files}
        self.extra = extra
        self.called: str | None = None

    def _profile(self, frame, event, arg):
        if self.called is not None:
            return
        if event == "call":
            code = frame.f_code
            fname = code.co_filename
            if fname in self.files and not code.co_name.startswith("_"):
                module = os.path.splitext(os.path.basename(fname))[0]
                prefix = "lnkit." if module in ("norms", "_torch") else f"lnkit.{module}."
                self.called = prefix + code.co_name
            elif code.co_name in _TORCH_PY and fname.replace("\\", "/").endswith("torch/nn/functional.py"):
                self.called = f"torch.nn.functional.{code.co_name}"
        elif event == "c_call":
            name = getattr(arg, "__name__", "")
            if name in _TORCH_C and (getattr(arg, "__module__", None) or "").startswith("torch"):
                self.called = f"torch.{name}"
        if self.called is None and self.extra is not None:
            self.called = self.extra(frame, event, arg)

    def __enter__(self):
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._previous)
        return False


@contextlib.contextmanager
def _quiet():
    """No warning reaches stderr while a check runs (nbgrader scores stderr output as a failure)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            yield


# --- showing inputs and outputs -----------------------------------------------------------------------------------


def _show_value(a) -> str:
    if isinstance(a, np.ndarray):
        if a.size <= 16:
            body = np.array2string(a, precision=6, separator=", ", suppress_small=False)
            body = " ".join(body.split())
            return f"np.array({body}, dtype=np.{a.dtype})" if a.size else f"np.zeros({a.shape}, dtype=np.{a.dtype})"
        return f"a {a.dtype} array of shape {a.shape}"
    if callable(a):
        return getattr(a, "__doc__", None) or getattr(a, "__name__", repr(a))
    return repr(a)


def _show_input(fname: str, argnames: Sequence[str], case: _Case) -> str:
    """``layer_norm(x, gamma, beta, eps=1e-05)`` and, below it, what each array or function argument holds."""
    parts, details = [], []
    for name, a in zip(argnames, case.args):
        if isinstance(a, np.ndarray) or callable(a):
            parts.append(name)
            details.append(f"{name} = {_show_value(a)}")
        else:
            parts.append(f"{name}={_show_value(a)}")
    call = f"{fname}({', '.join(parts)})"
    if details:
        call += "\n    where " + "\n      and ".join(details)
    if case.desc:
        call += f"\n    ({case.desc})"
    return call


def _show_output(v) -> str:
    if isinstance(v, np.ndarray) and v.size > 16:
        flat = v.reshape(-1)
        return f"{v.dtype} array of shape {v.shape}, starting {np.array2string(flat[:6], precision=5, separator=', ')}"
    if isinstance(v, np.ndarray):
        return f"{' '.join(np.array2string(v, precision=6, separator=', ').split())} ({v.dtype}, shape {v.shape})"
    return repr(v)


# --- the engine ---------------------------------------------------------------------------------------------------


class _Stop(Exception):
    """A problem so specific that there is nothing to diagnose: report it at once."""


@dataclass
class _Failure:
    case: _Case
    kind: str  # "error", "shape", "nonfinite", "values", "dtype", "type"
    got: tuple | None = None
    detail: str = ""


@dataclass
class _Spec:
    check: str  # "check_layer_norm"
    fname: str  # "layer_norm"
    argnames: tuple
    outnames: tuple  # ("output",) for a function returning one value; ("mean", "var") for a pair
    expected: Callable[[_Case], tuple]  # the right answers, as a tuple
    variants: Sequence[tuple[str, Callable[[_Case], tuple]]] = ()  # (what the mistake is, its answers)
    tag_rules: Sequence[tuple[str, str]] = ()  # (tag, message) when every failing case has the tag
    lnkit_files: Sequence[str] = ("norms.py", "_torch.py")
    integers: bool = False  # the answers are Python ints
    spy_extra: Callable | None = None
    select: tuple | None = None  # grade only these outputs (indices into outnames); the others are not compared
    returns: tuple = ()  # every output the function returns (set by _run)
    contract_only: bool = False  # check only the contract: types, shapes, dtypes, inputs left alone, no reference
    # Out of the kernel (lnkit.grading), the student's function runs in another process: the spy is named (see
    # _SPIES), functions named in stand_in are replaced there by correct ones, and remote_info sees what came back.
    spy_name: str = ""
    stand_in: tuple = ()
    remote_info: Callable[[dict], None] | None = None


def _fresh(a):
    return a.copy() if isinstance(a, np.ndarray) else a


def _as_tuple(spec: _Spec, out, case: _Case) -> tuple:
    names = spec.returns or spec.outnames
    n = len(names)
    if n == 1:
        return (out,)
    if not isinstance(out, (tuple, list)) or len(out) != n:
        what = type(out).__name__
        if isinstance(out, (tuple, list)):
            what = f"a {what} of {len(out)} items"
        raise _Stop(f"{spec.fname} must return a tuple of {n} arrays, ({', '.join(names)}); it returned {what}.")
    return tuple(out[i] for i in spec.select) if spec.select else tuple(out)


def _selected(spec: _Spec) -> _Spec:
    """The spec that compares only the outputs in spec.select."""
    if not spec.select:
        return spec
    pick = lambda f: (lambda case: None if (r := f(case)) is None else tuple(r[i] for i in spec.select))  # noqa: E731
    return dataclasses.replace(
        spec,
        returns=spec.outnames,
        outnames=tuple(spec.outnames[i] for i in spec.select),
        expected=pick(spec.expected),
        variants=[(m, pick(v)) for m, v in spec.variants],
    )


def _not_written(spec: _Spec) -> _Stop:
    return _Stop(
        f"{spec.fname} is not written yet: it raises NotImplementedError. Replace the line "
        f"`raise NotImplementedError()` with your code."
    )


def _call_remote(spec: _Spec, student, case: _Case, args: tuple, kwargs: dict):
    """The student's function runs in the student server (lnkit.grading): ``(out, args as they are after the call)``.

    What comes back is plain data rebuilt from bytes; every way the call can go wrong arrives as an exception that
    carries ``kind`` and says itself to the student.
    """
    try:
        out, after, info = student.remote_call(args, kwargs, lnkit_files=spec.lnkit_files, spy=spec.spy_name,
                                               stand_in=spec.stand_in)
    except Exception as e:  # noqa: BLE001 - only the grading's own problems are handled here
        if not getattr(type(e), "__lnkit_remote_error__", False):
            raise
        if e.kind == "raised":
            if e.type_name == "NotImplementedError":
                raise _not_written(spec) from None
            return _Failure(case, "error", detail=f"{e.type_name}: {e.message}"), args
        if e.kind == "reference":
            raise _Stop(_reference_message(spec, e.called)) from None
        raise _Stop(f"{e.describe(spec.fname)}\n  input: {_show_input(spec.fname, spec.argnames, case)}") from None
    if spec.remote_info is not None:
        spec.remote_info(info)
    after = tuple(a if b is None else b for a, b in zip(args, list(after) + [None] * len(args)))
    return out, after


def _call(spec: _Spec, student: Callable, case: _Case) -> tuple:
    args = tuple(_fresh(a) for a in case.args)
    kwargs = {k: _fresh(v) for k, v in case.kwargs.items()}
    if getattr(student, "__lnkit_remote__", False):
        out, args = _call_remote(spec, student, case, args, kwargs)
        if isinstance(out, _Failure):
            return out
        return _checked_call(spec, case, args, out)
    spy = _Spy(spec.lnkit_files, spec.spy_extra)
    try:
        with spy:
            out = student(*args, **kwargs)
    except NotImplementedError:
        if spy.called:
            raise _Stop(_reference_message(spec, spy.called)) from None
        raise _not_written(spec) from None
    except _Stop:
        raise
    except Exception as e:  # noqa: BLE001 - any error of the student's is reported, with its input
        if spy.called:
            raise _Stop(_reference_message(spec, spy.called)) from None
        return _Failure(case, "error", detail=f"{type(e).__name__}: {e}")
    if spy.called:
        raise _Stop(_reference_message(spec, spy.called))
    return _checked_call(spec, case, args, out)


def _checked_call(spec: _Spec, case: _Case, args: tuple, out) -> tuple:
    """The inputs must be as they were before the call; then the outputs, as a tuple."""
    for name, before, after in zip(spec.argnames, case.args, args):
        if isinstance(before, np.ndarray):
            if after.shape != before.shape or after.dtype != before.dtype or not np.array_equal(
                after, before, equal_nan=True
            ):
                raise _Stop(
                    f"{spec.fname} modified its input `{name}` in place (an operation such as `{name} -= mean` or "
                    f"`{name}[...] = ...` writes into the caller's array). Work on a new array instead: "
                    f"`{name} = {name} - mean` makes a copy and leaves the caller's data alone.\n"
                    f"  input: {_show_input(spec.fname, spec.argnames, case)}"
                )
    return _as_tuple(spec, out, case)


def _reference_message(spec: _Spec, called: str) -> str:
    if called.startswith("np."):
        return f"you called {called} inside {spec.fname}: write the one-pass update yourself, reading each value once."
    return (
        f"you called {called} instead of writing {spec.fname} yourself. The exercise is to implement it with NumPy "
        f"operations (mean, subtraction, square root, ...); the reference implementations are off limits inside "
        f"{spec.fname}."
    )


def _to_array(v):
    if isinstance(v, (np.ndarray, np.generic)):
        return np.asarray(v)
    return None


def _compare(spec: _Spec, case: _Case, got: tuple, expected: tuple) -> _Failure | None:
    """Compare one case's answers: type, then shape, then values, then dtype."""
    tols = case.tol or [(1e-9, 1e-9)] * len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        name = spec.outnames[i]
        if spec.integers:
            if isinstance(g, bool) or not isinstance(g, (int, np.integer)):
                return _Failure(case, "type", got, f"{name}: returned {type(g).__name__} {g!r}, not an int")
            if int(g) != e:
                return _Failure(case, "values", got)
            if not isinstance(g, int):
                return _Failure(case, "type", got, f"it returned {type(g).__module__}.{type(g).__name__} {g!r}, "
                                                   f"not a plain Python int: wrap the result in `int(...)`")
            continue
        ga = _to_array(g)
        if ga is None:
            return _Failure(case, "type", got, f"{name} is a {type(g).__name__}, not a NumPy array")
        if ga.shape != e.shape:
            return _Failure(case, "shape", got, f"{name} has shape {ga.shape}; expected {e.shape}")
        if ga.dtype.kind not in "fiu":
            return _Failure(case, "type", got, f"{name} has dtype {ga.dtype}, not a floating dtype")
        if spec.contract_only:
            continue
        rtol, atol = tols[i]
        g64, e64 = ga.astype(np.float64), e.astype(np.float64)
        if not np.all(np.isfinite(g64)):
            return _Failure(case, "nonfinite", got, f"{name} contains NaN or inf")
        if not np.allclose(g64, e64, rtol=rtol, atol=atol):
            return _Failure(case, "values", got, f"{name}")
    if not spec.integers:
        for i, (g, e) in enumerate(zip(got, expected)):
            ga = np.asarray(g)
            if ga.dtype != e.dtype:
                return _Failure(case, "dtype", got, f"{spec.outnames[i]} is {ga.dtype}; expected {e.dtype}")
    return None


def _matches(spec: _Spec, case: _Case, got: tuple, answer: tuple) -> bool:
    tols = case.tol or [(1e-9, 1e-9)] * len(answer)
    for i, (g, a) in enumerate(zip(got, answer)):
        if spec.integers:
            if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or int(g) != a:
                return False
            continue
        ga, aa = _to_array(g), np.asarray(a)
        if ga is None or ga.shape != aa.shape:
            return False
        rtol, atol = tols[i]
        if not np.allclose(ga.astype(np.float64), aa.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True):
            return False
    return True


def _diagnose(spec: _Spec, failures: list[_Failure]) -> str:
    first = failures[0]
    show = lambda f: _show_input(spec.fname, spec.argnames, f.case)  # noqa: E731
    wrong = [f for f in failures if f.kind in ("shape", "nonfinite", "values")]

    # 1. does every failing case share a property that explains it (rows far from zero, float16 overflow)?
    if wrong and len(wrong) == len(failures):
        for tag, message in spec.tag_rules:
            if all(tag in f.case.tags for f in wrong):
                return _with_io(spec, message, wrong[0])

    # 2. which known mistake reproduces the student's answers on the most failing cases?
    best, best_hits, best_case = None, 0, None
    for message, variant in spec.variants:
        hits, where = 0, None
        for f in wrong:
            try:
                answer = variant(f.case)
            except Exception:  # noqa: BLE001 - a variant that does not apply to this input
                continue
            if answer is None:
                continue
            if _matches(spec, f.case, f.got, answer):
                hits += 1
                # show the smallest input that reproduces it, preferring one that is not empty
                if where is None or ("zero" in where.case.tags and "zero" not in f.case.tags):
                    where = f
        if hits > best_hits and 2 * hits >= len(wrong):  # it must explain at least half of the failures
            best, best_hits, best_case = message, hits, where
    if best is not None:
        return _with_io(spec, best, best_case)

    # 3. the same answer whatever the input: hard-coded
    if spec.integers and len(failures) >= 2:
        answers = {repr(f.got) for f in failures if f.got is not None}
        if len(answers) == 1 and len(failures) == len([f for f in failures if f.got is not None]):
            return _with_io(spec, f"{spec.fname} returns the same value, {failures[0].got[0]!r}, whatever its "
                                  f"arguments: compute the answer from them rather than writing it in.", first)

    # 4. describe the smallest failure as it is
    if first.kind == "error":
        return (
            f"{spec.fname} raised {first.detail}\n  on the input {show(first)}\n"
            f"  (the smallest of the {len(failures)} failing cases)."
        )
    if first.kind == "type":
        return f"{spec.fname} returns the wrong kind of value: {first.detail}.\n  smallest failing input: {show(first)}"
    if first.kind == "dtype":
        in_dtype = next((a.dtype for a in first.case.args if isinstance(a, np.ndarray)), None)
        hint = (
            " Compute in float32 if you like (float16 input should be), but convert the result back with "
            "`.astype(x.dtype)`."
        )
        return (
            f"{spec.fname} loses the input's dtype: for {in_dtype} input, {first.detail}. Your function must return "
            f"the input's floating dtype.{hint}\n  smallest failing input: {show(first)}"
        )
    if first.kind == "shape":
        return f"{spec.fname} returns the wrong shape: {first.detail}.\n  smallest failing input: {show(first)}"
    if first.kind == "nonfinite":
        return _with_io(spec, f"{spec.fname} returns NaN or infinity where the right answer is finite.", first)
    return _with_io(spec, f"{spec.fname} returns wrong values.", first)


def _with_io(spec: _Spec, message: str, f: _Failure) -> str:
    expected = spec.expected(f.case)
    lines = [message, f"  smallest failing input: {_show_input(spec.fname, spec.argnames, f.case)}"]
    if f.got is not None:
        for name, e, g in zip(spec.outnames, expected, f.got):
            label = "" if len(spec.outnames) == 1 else f" {name}"
            lines.append(f"  expected{label}: {_show_output(e)}")
            lines.append(f"  got{label}:      {_show_output(g if spec.integers else np.asarray(g))}")
    return "\n".join(lines)


def _fail(message: str) -> None:
    """The one place a check fails from: IPython always shows the frame that raises, so keep it this short."""
    raise AssertionError(message)


def _run(spec: _Spec, student: Callable, cases: list[_Case]) -> None:
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    if not callable(student):
        _fail(f"{spec.check}: pass your function itself, as in `{spec.check}({spec.fname})`; "
              f"got {type(student).__name__}.")
    spec = _selected(spec)
    cases = sorted(cases, key=lambda c: c.size)
    failures: list[_Failure] = []
    message = None
    with _quiet():
        try:
            for case in cases:
                got = _call(spec, student, case)
                if isinstance(got, _Failure):
                    failures.append(got)
                    continue
                failure = _compare(spec, case, got, spec.expected(case))
                if failure is not None:
                    failures.append(failure)
        except _Stop as stop:
            message = str(stop)
        if message is None and failures:
            message = _diagnose(spec, failures)
    if message is not None:
        total = f" ({len(failures)} of {len(cases)} cases failed)" if failures else ""
        _fail(f"{spec.check}{total}: {message}")
    what = f" ({', '.join(spec.outnames)})" if spec.select else ""
    if spec.contract_only:
        what = " (contract: types, shapes, dtypes, inputs left unchanged)"
    print(f"{spec.check}{what}: {len(cases)} cases passed")


# --- building array inputs ----------------------------------------------------------------------------------------


def _part(part: str, allowed: Sequence[str]) -> str:
    if part not in allowed:
        raise ValueError(f"part must be one of {', '.join(map(repr, allowed))}; got {part!r}")
    return part


def _rows(rng, shape, dtype, offset=0.0, scale=1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale + offset).astype(dtype)


def _array_cases(rng: np.random.Generator, hidden: bool, params: bool = True, eps_arg: bool = True,
                 f16_scale: float = 1000.0) -> list[_Case]:
    """x (and gamma, beta, eps) for functions that normalize over the last axis."""
    specs = []  # (shape, dtype, offset, scale, desc, tags, constant_row)
    if not hidden:
        specs += [
            ((4,), np.float64, 0.0, 1.0, "one token, shape (C,)", {"basic"}, False),
            ((3, 4), np.float64, 0.5, 2.0, "", {"basic"}, False),
            ((2, 3, 5), np.float64, -1.0, 3.0, "shape (B, T, C)", {"basic"}, False),
            ((0, 4), np.float64, 0.0, 1.0, "zero rows", {"zero"}, False),
            ((2, 0, 4), np.float64, 0.0, 1.0, "zero rows", {"zero"}, False),
            ((3, 4), np.float64, 0.0, 1.0, "row 1 is constant", {"constant"}, True),
            ((2, 6), np.float64, 3.0, 1e-4, "tiny variance, 1e-8, smaller than eps", {"tiny"}, False),
            ((4, 8), np.float32, 0.0, 1.0, "float32", {"f32"}, False),
            ((2, 3, 8), np.float32, 1e4, 1.0, "float32 rows whose mean is about 1e4 and spread 1", {"offset"}, False),
            ((3, 16), np.float64, 1e8, 1.0, "float64 rows whose mean is about 1e8 and spread 1", {"offset"}, False),
            ((2, 3, 8), np.float16, 0.5, 1.0, "float16", {"f16"}, False),
            ((2, 16), np.float16, 0.0, f16_scale, f"float16 values of a few times {f16_scale:g}: their squares "
             "exceed float16's largest number, 65504", {"f16big"}, False),
            ((2, 2, 3, 6), np.float32, 1.0, 2.0, "four axes", {"basic"}, True),
            ((5, 32), np.float64, 0.0, 1.0, "", {"basic"}, False),
        ]
    else:
        for _ in range(12):
            ndim = int(rng.integers(1, 5))
            shape = tuple(int(d) for d in rng.integers(1, 5, size=ndim - 1)) + (int(rng.integers(2, 40)),)
            dtype = [np.float64, np.float32, np.float16][int(rng.integers(0, 3))]
            offset = float(rng.choice([0.0, 0.3, -2.0, 50.0]))
            scale = float(rng.choice([0.5, 1.0, 4.0]))
            specs.append((shape, dtype, offset, scale, "random", {"random"}, bool(rng.integers(0, 2))))
        specs.append(((3, 7), np.float32, -3e4, 2.0, "float32 rows whose mean is about -3e4", {"offset"}, False))
    cases = []
    for shape, dtype, offset, scale, desc, tags, constant in specs:
        x = _rows(rng, shape, dtype, offset, scale)
        if constant and x.ndim >= 2 and x.shape[-2] > 1:
            x[..., 1, :] = x.dtype.type(offset + 2.5 * scale)
            desc = (desc + ", " if desc else "") + "one constant row per matrix"
            tags = tags | {"constant"}
        if "f16big" in tags:  # one value per row whose square is beyond float16's range, whatever the seed
            x[..., 0] = x.dtype.type(3.0 * scale)
        c = x.shape[-1]
        cond = 1.0 + abs(offset) / scale
        tol = _tol(dtype, cond)
        args: tuple = (x,)
        if params:
            gamma = (1.0 + 0.5 * rng.standard_normal(c)).astype(dtype)
            beta = (0.5 * rng.standard_normal(c)).astype(dtype)
            args += (gamma, beta)
        eps = 1e-5
        if eps_arg:
            args += (eps,)
        cases.append(_Case(args, desc, frozenset(tags), [(tol, tol)] * 2))
    if eps_arg:  # an eps other than the default, with variances where it matters
        eps = 1e-3 if not hidden else float(rng.choice([2e-3, 5e-4, 1e-2]))
        x = _rows(rng, (3, 5), np.float64, 1.0, 0.05)
        args = (x,)
        if params:
            args += ((1.0 + 0.5 * rng.standard_normal(5)), 0.5 * rng.standard_normal(5))
        cases.append(_Case(args + (eps,), f"eps={eps} is passed, and the variance (about 2.5e-3) is near it",
                           frozenset({"eps"}), [(1e-9, 1e-9)] * 2))
    return cases


def _in_dtype(x: np.ndarray) -> np.dtype:
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)


def _ln64(x, gamma, beta, eps, *, axis=(-1,), ddof=0, eps_outside=False, divide_by_var=False, std=False,
          beta_first=False):
    """A LayerNorm in float64 with switchable mistakes, returned in x's dtype."""
    xw = np.asarray(x, dtype=np.float64)
    mean = xw.mean(axis=axis, keepdims=True)
    n = math.prod(xw.shape[a] for a in axis) if axis is not None else xw.size
    var = ((xw - mean) ** 2).sum(axis=axis, keepdims=True) / (n - ddof)
    if eps_outside:
        y = (xw - mean) / (np.sqrt(var) + eps)
    elif divide_by_var:
        y = (xw - mean) / (var + eps)
    else:
        y = (xw - mean) / np.sqrt(var + eps)
    g = None if gamma is None else np.asarray(gamma, dtype=np.float64)
    b = None if beta is None else np.asarray(beta, dtype=np.float64)
    if beta_first:
        y = (y + b) * g
    else:
        if g is not None:
            y = y * g
        if b is not None:
            y = y + b
    return y.astype(_in_dtype(np.asarray(x)))


# --- chapter 1 ----------------------------------------------------------------------------------------------------


def _stats_variant(axis=(-1,), ddof=0, what="meanvar", keepdims=False):
    def variant(case):
        x = case.args[0]
        xw = x.astype(np.float64)
        ax = tuple(range(x.ndim)) if axis is None else tuple(a % x.ndim for a in axis)
        mean = xw.mean(axis=ax, keepdims=True)
        n = math.prod(x.shape[a] for a in ax)
        var = ((xw - mean) ** 2).sum(axis=ax, keepdims=True) / (n - ddof)
        if not keepdims:
            mean, var = mean.squeeze(ax), var.squeeze(ax)
        out = _in_dtype(x)
        if what == "meanstd":
            return mean.astype(out), np.sqrt(var).astype(out)
        if what == "varmean":
            return var.astype(out), mean.astype(out)
        return mean.astype(out), var.astype(out)

    return variant


_WRONG_AXIS_0 = (
    "the statistics are taken over the wrong axis: axis 0 (across the tokens, or the batch) instead of the last "
    "axis. LayerNorm takes one mean and one variance per token, over its C features: use `axis=-1`."
)
_WRONG_AXIS_ALL = (
    "the statistics are taken over the whole array (one mean and variance for everything) instead of over the last "
    "axis. LayerNorm takes one mean and one variance per token, over its C features: use `axis=-1`."
)
_WRONG_AXIS_LEADING = (
    "the statistics are taken over the leading axes (per feature across tokens, as BatchNorm does) instead of over "
    "the last axis. LayerNorm takes one pair per token: use `axis=-1`."
)
_UNBIASED = (
    "the variance is the unbiased one (dividing by C - 1). LayerNorm uses the biased variance, dividing by C: "
    "`np.var(x, axis=-1)` with its default `ddof=0`, or `((x - mean)**2).mean(axis=-1)`."
)
_CANCEL = (
    "the variance loses all its accuracy when a row's values sit far from zero: computing it as "
    "E[x²] − E[x]² subtracts two huge, nearly equal numbers (catastrophic cancellation). Compute the mean first, "
    "then the mean of (x − mean)²."
)
_F16 = (
    "float16 input overflows: the squares of values in the hundreds or thousands exceed float16's largest number (65504) and "
    "become infinity. Compute in float32 (`x.astype(np.float32)`) and convert the result back to float16 at the end."
)


def _stats_cases(hidden: bool) -> list[_Case]:
    rng = np.random.default_rng(HIDDEN_SEED if hidden else VISIBLE_SEED)
    cases = []
    for c in _array_cases(rng, hidden, params=False, eps_arg=False, f16_scale=100.0):
        x = c.args[0]
        spread = float(np.std(x.astype(np.float64))) if x.size else 1.0
        t = c.tol[0][0]
        mean_atol = t * (1.0 + float(np.abs(x.astype(np.float64)).max(initial=0.0)))
        var_atol = t * max(spread, 1e-4) ** 2 * 10
        cases.append(_Case((x,), c.desc, c.tags, [(t, mean_atol), (max(t, 1e-6) * 10, var_atol)]))
    return cases


def check_layer_norm_stats(layer_norm_stats: Callable, hidden: bool = False) -> None:
    """Check ``layer_norm_stats(x) -> (mean, var)``: the mean and biased variance of every row, shapes x.shape[:-1]."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    spec = _Spec(
        check="check_layer_norm_stats",
        fname="layer_norm_stats",
        argnames=("x",),
        outnames=("mean", "var"),
        expected=_stats_variant(),
        variants=[
            (_UNBIASED, _stats_variant(ddof=1)),
            ("the second value is the standard deviation; the exercise asks for the variance (no square root).",
             _stats_variant(what="meanstd")),
            ("the two values come back in the wrong order: return `(mean, var)`, the mean first.",
             _stats_variant(what="varmean")),
            ("the statistics keep a trailing axis of size 1 (`keepdims=True`): mean and var must have shape "
             "x.shape[:-1], one number per row.", _stats_variant(keepdims=True)),
            (_WRONG_AXIS_0, _stats_variant(axis=(0,))),
            (_WRONG_AXIS_ALL, _stats_variant(axis=None)),
        ],
        tag_rules=[("offset", _CANCEL), ("f16big", _F16)],
    )
    _run(spec, layer_norm_stats, _stats_cases(hidden))


def _ln_expected(case):
    x, gamma, beta, eps = case.args
    return (_ln64(x, gamma, beta, eps),)


def _ln_variant(**kw):
    def variant(case):
        x, gamma, beta, eps = case.args
        opts = dict(kw)
        g, b = gamma, beta
        if opts.pop("no_gamma", False):
            g = None
        if opts.pop("no_beta", False):
            b = None
        if opts.pop("swap", False):
            g, b = beta, gamma
        if opts.pop("default_eps", False):
            if eps == 1e-5:
                return None
            eps = 1e-5
        axis = opts.pop("axis", (-1,))
        if axis == "leading":
            if x.ndim < 2:
                return None
            axis = tuple(range(x.ndim - 1))
        elif axis is not None:
            if x.ndim < 2:
                return None
            axis = tuple(a % x.ndim for a in axis)
        return (_ln64(x, g, b, eps, axis=axis, **opts),)

    return variant


def _ln_without_eps(case):
    x, gamma, beta, _ = case.args
    return (_ln64(x, gamma, beta, 0.0),)


def check_layer_norm(layer_norm: Callable, hidden: bool = False) -> None:
    """Check ``layer_norm(x, gamma, beta, eps=1e-5)`` against LayerNorm over the last axis (PyTorch's semantics)."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    rng = np.random.default_rng(HIDDEN_SEED + 1 if hidden else VISIBLE_SEED + 1)
    spec = _Spec(
        check="check_layer_norm",
        fname="layer_norm",
        argnames=("x", "gamma", "beta", "eps"),
        outnames=("output",),
        expected=_ln_expected,
        variants=[
            (_UNBIASED, _ln_variant(ddof=1)),
            ("eps is outside the square root: LayerNorm divides by sqrt(var + eps), not by sqrt(var) + eps. "
             "The difference shows when the variance is tiny.", _ln_variant(eps_outside=True)),
            ("the output is divided by the variance instead of by the standard deviation: divide by "
             "sqrt(var + eps).", _ln_variant(divide_by_var=True)),
            ("gamma is ignored: multiply the normalized values by gamma (one gain per feature).",
             _ln_variant(no_gamma=True)),
            ("beta is ignored: add beta (one bias per feature) after multiplying by gamma.",
             _ln_variant(no_beta=True)),
            ("gamma and beta are swapped: the output is normalized * gamma + beta.", _ln_variant(swap=True)),
            ("beta is added before multiplying by gamma: the output is normalized * gamma + beta, not "
             "(normalized + beta) * gamma.", _ln_variant(beta_first=True)),
            ("the eps argument is ignored (1e-5 is used whatever eps is passed): use the eps you are given.",
             _ln_variant(default_eps=True)),
            ("the statistics are taken over all axes but the last (per feature, as BatchNorm does) instead of over "
             "the last axis. LayerNorm normalizes each token over its C features: use `axis=-1, keepdims=True`.",
             _ln_variant(axis="leading")),
            (_WRONG_AXIS_0, _ln_variant(axis=(0,))),
            (_WRONG_AXIS_ALL, _ln_variant(axis=None)),
            ("eps is missing, so constant rows give NaN: their variance is 0, and 0 / sqrt(0) is NaN. eps is there "
             "to prevent this: divide by sqrt(var + eps).", _ln_without_eps),
        ],
        tag_rules=[("offset", _CANCEL), ("f16big", _F16)],
    )
    _run(spec, layer_norm, _array_cases(rng, hidden))


# --- chapter 2 ----------------------------------------------------------------------------------------------------


def _norm_over64(x, axes, eps, ddof=0, eps_outside=False):
    xw = x.astype(np.float64)
    nd = x.ndim
    axes = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    axes = tuple(sorted(a % nd for a in axes))
    mean = xw.mean(axis=axes, keepdims=True)
    n = math.prod(x.shape[a] for a in axes)
    var = ((xw - mean) ** 2).sum(axis=axes, keepdims=True) / (n - ddof)
    y = (xw - mean) / (np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps))
    return y.astype(_in_dtype(x))


def _norm_over_cases(hidden: bool) -> list[_Case]:
    rng = np.random.default_rng(HIDDEN_SEED + 2 if hidden else VISIBLE_SEED + 2)
    specs = []  # (shape, axes, dtype, offset, scale, desc, tags)
    if not hidden:
        specs = [
            ((5,), -1, np.float64, 0.0, 1.0, "one vector", {"basic"}),
            ((3, 4), 0, np.float64, 1.0, 2.0, "axis 0 of a (T, C) array", {"basic"}),
            ((2, 3, 4), -1, np.float64, 0.0, 1.0, "LayerNorm: per token", {"basic"}),
            ((2, 3, 4), (0, 1), np.float64, 0.0, 1.0, "BatchNorm-style: per feature", {"basic"}),
            ((2, 3, 4), 1, np.float64, 0.0, 1.0, "per feature across one sequence's tokens", {"basic"}),
            ((2, 3, 4), (0, 1, 2), np.float64, 0.0, 1.0, "the whole tensor", {"basic"}),
            ((2, 3, 4), (-2, -1), np.float64, 0.0, 1.0, "negative axes, per sequence", {"basic"}),
            ((2, 3, 4, 5), (1, 3), np.float32, 0.0, 1.0, "two axes that are not next to each other", {"basic"}),
            ((0, 3, 4), (1, 2), np.float64, 0.0, 1.0, "zero sequences in the batch", {"zero"}),
            ((4, 8), -1, np.float32, 1e4, 1.0, "float32 rows whose mean is about 1e4", {"offset"}),
            ((2, 3, 8), (0, 1), np.float16, 0.5, 1.0, "float16", {"f16"}),
            ((2, 8), -1, np.float16, 0.0, 1000.0, "float16 values in the thousands", {"f16big"}),
            ((3, 6), -1, np.float64, 2.0, 1e-4, "tiny variance, smaller than eps", {"tiny"}),
            ((4, 5), 1, np.float64, 0.0, 1.0, "row 2 is constant", {"constant"}),
        ]
    else:
        for _ in range(12):
            nd = int(rng.integers(1, 5))
            shape = tuple(int(d) for d in rng.integers(2, 5, size=nd))
            k = int(rng.integers(1, nd + 1))
            axes = tuple(int(a) for a in rng.choice(nd, size=k, replace=False))
            axes = tuple(a - nd if rng.integers(0, 2) else a for a in axes)
            dtype = [np.float64, np.float32][int(rng.integers(0, 2))]
            specs.append((shape, axes if k > 1 else axes[0], dtype, float(rng.choice([0.0, 3.0])), 1.5, "random",
                          {"random"}))
    cases = []
    for shape, axes, dtype, offset, scale, desc, tags in specs:
        x = _rows(rng, shape, dtype, offset, scale)
        if "constant" in tags:
            x[2] = 1.5
        tol = _tol(dtype, 1.0 + abs(offset) / scale)
        eps = 1e-5
        cases.append(_Case((x, axes, eps), desc, frozenset(tags), [(tol, tol)]))
    eps = 1e-3 if not hidden else 4e-3
    cases.append(_Case((_rows(rng, (3, 5), np.float64, 1.0, 0.05), (0, 1), eps),
                       f"eps={eps} is passed, and the variance is near it", frozenset({"eps"}), [(1e-9, 1e-9)]))
    return cases


def check_normalize_over(normalize_over: Callable, hidden: bool = False) -> None:
    """Check ``normalize_over(x, axes, eps=1e-5)``: mean 0, variance 1 over ``axes``, no gain, no bias."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames

    def variant(kind):
        def f(case):
            x, axes, eps = case.args
            nd = x.ndim
            ax = (axes,) if isinstance(axes, int) else tuple(axes)
            ax = tuple(sorted(a % nd for a in ax))
            if kind == "unbiased":
                return (_norm_over64(x, ax, eps, ddof=1),)
            if kind == "outside":
                return (_norm_over64(x, ax, eps, eps_outside=True),)
            if kind == "complement":
                rest = tuple(a for a in range(nd) if a not in ax)
                return (_norm_over64(x, rest, eps),) if rest else None
            if kind == "last":
                return (_norm_over64(x, -1, eps),) if ax != (nd - 1,) else None
            if kind == "first":
                return (_norm_over64(x, ax[:1], eps),) if len(ax) > 1 else None
            if kind == "default_eps":
                return (_norm_over64(x, ax, 1e-5),) if eps != 1e-5 else None
            raise AssertionError(kind)

        return f

    spec = _Spec(
        check="check_normalize_over",
        fname="normalize_over",
        argnames=("x", "axes", "eps"),
        outnames=("output",),
        expected=lambda case: (_norm_over64(*case.args),),
        variants=[
            ("the variance is the unbiased one (dividing by n - 1). Normalization layers use the biased variance, "
             "dividing by n, the number of values that share one statistic: `x.var(axis=axes, keepdims=True)` with "
             "its default `ddof=0`.", variant("unbiased")),
            ("eps is outside the square root: divide by sqrt(var + eps), not by sqrt(var) + eps.", variant("outside")),
            ("the statistics are taken over the axes that are NOT in `axes`: `axes` lists the axes to average over "
             "(`x.mean(axis=axes, keepdims=True)`), the others are kept.", variant("complement")),
            ("`axes` is ignored: the statistics are always taken over the last axis. Pass `axis=axes` to "
             "mean and var (NumPy accepts a tuple of axes).", variant("last")),
            ("only the first of several axes is used: when `axes` is a tuple, average over all of them at once "
             "(`x.mean(axis=tuple(axes), keepdims=True)`).", variant("first")),
            ("the eps argument is ignored (1e-5 is used whatever eps is passed): use the eps you are given.",
             variant("default_eps")),
        ],
        tag_rules=[("offset", _CANCEL), ("f16big", _F16)],
    )
    _run(spec, normalize_over, _norm_over_cases(hidden))


def check_count_statistics(count_statistics: Callable, hidden: bool = False) -> None:
    """Check ``count_statistics(shape, axes) -> int``: the product of the sizes of the axes not normalized over."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames

    def axes_of(shape, axes):
        ax = (axes,) if isinstance(axes, int) else tuple(axes)
        return tuple(a % len(shape) for a in ax)

    def count(shape, axes, inverted=False):
        ax = axes_of(shape, axes)
        return math.prod(d for i, d in enumerate(shape) if (i in ax) == inverted)

    if not hidden:
        raw = [((5,), -1), ((4, 6), 0), ((4, 6), -1), ((1, 1024, 768), -1), ((4, 1024, 768), -1),
               ((4, 1024, 768), (0, 1)), ((4, 1024, 768), 1), ((4, 1024, 768), (0, 1, 2)),
               ((2, 3, 5, 7), (1, 3)), ((2, 3, 5, 7), (-3, -1)), ((0, 16, 8), -1), ((8, 16, 32), (-2,))]
    else:
        rng = np.random.default_rng(HIDDEN_SEED + 3)
        raw = []
        for _ in range(15):
            nd = int(rng.integers(1, 5))
            shape = tuple(int(d) for d in rng.integers(2, 40, size=nd))
            k = int(rng.integers(1, nd + 1))
            ax = tuple(int(a) - (nd if rng.integers(0, 2) else 0) for a in rng.choice(nd, size=k, replace=False))
            raw.append((shape, ax if k > 1 else ax[0]))
    raw.sort(key=lambda r: (math.prod(r[0]), len(r[0])))  # the smallest arrays first
    cases = [_Case((shape, axes), "", frozenset(), order=i) for i, (shape, axes) in enumerate(raw)]
    spec = _Spec(
        check="check_count_statistics",
        fname="count_statistics",
        argnames=("shape", "axes"),
        outnames=("count",),
        expected=lambda case: (count(*case.args),),
        integers=True,
        variants=[
            ("you multiplied the sizes of the axes normalized OVER; the count of (mean, variance) pairs is the "
             "product of the sizes of the axes that are kept (not in `axes`): one pair per position along them.",
             lambda case: (count(*case.args, inverted=True),)),
            ("negative axes are not handled: -1 means the last axis (use `a % len(shape)` to turn a negative axis "
             "into a non-negative one).",
             lambda case: (math.prod(d for i, d in enumerate(case.args[0])
                                     if i not in ((case.args[1],) if isinstance(case.args[1], int)
                                                  else tuple(case.args[1]))),)),
            ("you returned the number of values in the array; each statistic is shared by many values: count one "
             "pair per position along the axes NOT in `axes`.", lambda case: (math.prod(case.args[0]),)),
        ],
    )
    _run(spec, count_statistics, cases)


# --- chapter 3 ----------------------------------------------------------------------------------------------------

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
    rng = np.random.default_rng(HIDDEN_SEED + 4)
    out = []
    for _ in range(12):
        n_head = int(rng.integers(2, 17))
        out.append(("random", int(rng.integers(1, 50)), n_head * int(rng.integers(8, 97)), n_head))
    return out


def _int_spec(check, fname, argnames, expected, variants):
    return _Spec(check=check, fname=fname, argnames=argnames, outnames=("count",), expected=expected,
                 variants=variants, integers=True)


_LN_F = ("you forgot ln_f, the final LayerNorm a pre-LN GPT-2 applies once after its last block: "
         "every block has 2 (ln_1, ln_2), plus 1 at the end.")


def check_ln_applications(ln_applications: Callable, hidden: bool = False) -> None:
    """Check ``ln_applications(n_layer)``: LayerNorm applications in one forward pass of a pre-LN GPT-2."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    archs = sorted(_arch_cases(hidden), key=lambda a: a[1:])
    cases = [_Case((n,), name, frozenset(), order=i) for i, (name, n, d, h) in enumerate(archs)]
    spec = _int_spec(
        "check_ln_applications", "ln_applications", ("n_layer",), lambda c: (2 * c.args[0] + 1,),
        [
            (_LN_F, lambda c: (2 * c.args[0],)),
            ("you counted one LayerNorm per block; a GPT-2 block has two, ln_1 before attention and ln_2 before the "
             "MLP, and the model ends with ln_f.", lambda c: (c.args[0] + 1,)),
            ("you counted one LayerNorm per block and forgot ln_f: a block has two (ln_1 and ln_2), and ln_f comes "
             "once at the end.", lambda c: (c.args[0],)),
            ("you counted ln_f once per block; it is applied once, after the last block: 2 per block + 1.",
             lambda c: (3 * c.args[0],)),
        ],
    )
    _run(spec, ln_applications, cases)


def check_ln_statistics(ln_statistics: Callable, hidden: bool = False) -> None:
    """Check ``ln_statistics(n_layer, batch, seq_len, n_head)``: (mean, variance) pairs in one forward pass."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    rows = []
    for i, (name, n, d, h) in enumerate(_arch_cases(hidden)):
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
            ("n_head should play no part: LayerNorm normalizes each token's whole d_model vector before the Q/K/V "
             "projections split it into heads, so there is one (mean, variance) pair per token per LayerNorm, "
             "whatever the number of heads.", lambda c: (a(c.args[0]) * c.args[1] * c.args[2] * c.args[3],)),
            ("this is the 12×1024 count: heads × tokens. Heads play no part in LayerNorm; count one pair per token "
             "per LayerNorm application (2 per block + ln_f), times the batch size.",
             lambda c: (c.args[3] * c.args[2] * c.args[1],)),
            ("this is the 12×1024 count, heads × tokens, for one sequence. Heads play no part in LayerNorm; count "
             "one pair per token per LayerNorm application (2 per block + ln_f), times the batch size.",
             lambda c: (c.args[3] * c.args[2],)),
            (_LN_F, lambda c: (2 * c.args[0] * c.args[1] * c.args[2],)),
            ("the batch size is missing: every sequence in the batch has its own statistics (LayerNorm never mixes "
             "sequences), so multiply by batch.", lambda c: (a(c.args[0]) * c.args[2],)),
            ("you counted one LayerNorm per block; a GPT-2 block has two (ln_1, ln_2), plus ln_f at the end.",
             lambda c: ((c.args[0] + 1) * c.args[1] * c.args[2],)),
        ],
    )
    _run(spec, ln_statistics, rows)


def check_ln_parameters(ln_parameters: Callable, hidden: bool = False) -> None:
    """Check ``ln_parameters(n_layer, d_model)``: learned LayerNorm parameters (gains and biases) of a pre-LN GPT-2."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    archs = sorted(_arch_cases(hidden), key=lambda a: a[1:])
    cases = [_Case((n, d), name, frozenset(), order=i) for i, (name, n, d, h) in enumerate(archs)]
    a = lambda n: 2 * n + 1  # noqa: E731
    spec = _int_spec(
        "check_ln_parameters", "ln_parameters", ("n_layer", "d_model"), lambda c: (a(c.args[0]) * 2 * c.args[1],),
        [
            ("you counted only the gains (or only the biases): every LayerNorm holds both, gamma and beta, "
             "d_model numbers each.", lambda c: (a(c.args[0]) * c.args[1],)),
            (_LN_F, lambda c: (2 * c.args[0] * 2 * c.args[1],)),
            ("you counted one LayerNorm per block; a GPT-2 block has two (ln_1, ln_2), plus ln_f at the end.",
             lambda c: ((c.args[0] + 1) * 2 * c.args[1],)),
            (_LN_F + " You also counted only one of gamma and beta: each LayerNorm holds both.",
             lambda c: (2 * c.args[0] * c.args[1],)),
        ],
    )
    _run(spec, ln_parameters, cases)


# --- chapter 4 ----------------------------------------------------------------------------------------------------


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
    rng = np.random.default_rng(HIDDEN_SEED + 5 if hidden else VISIBLE_SEED + 5)
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
             "tokens. The intercept of the fitted line is mean(y) − gamma·mean(xhat).", fit(how="nointercept")),
            ("x is normalized per feature across the tokens (axis 0) instead of per token over its features "
             "(the last axis), so your regressor is not what the layer multiplied by gamma.", fit(axis0=True)),
            ("the gain is a ratio of standard deviations, which loses its sign: some gains are negative. Use the "
             "least-squares slope, cov(xhat, y) / var(xhat), per feature.", fit(how="std")),
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
    _run(spec, fit_gain_bias, _gain_bias_cases(hidden))


# --- chapter 5 ----------------------------------------------------------------------------------------------------


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
    rng = np.random.default_rng((HIDDEN_SEED if hidden else VISIBLE_SEED) + (7 if with_beta else 6))
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


def _stand_in(name: str, used: dict) -> Callable:
    """A correct function standing in for the student's one of that name while a check runs; it records in ``used``
    that it was called. check_layer_norm_via_rms uses it in the kernel, the grading server out of it."""
    if name != "rms_norm":
        raise ValueError(f"stand_in: no stand-in for {name!r}; expected 'rms_norm'")

    def rms_norm(x, gamma=None, eps=1e-6):
        used["rms_norm"] = True
        return _rms64(x, gamma, eps)

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


# --- chapter 6 ----------------------------------------------------------------------------------------------------


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
    rng = np.random.default_rng((HIDDEN_SEED if hidden else VISIBLE_SEED) + seed)
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


# --- chapter 7 ----------------------------------------------------------------------------------------------------


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


def _backward_cases(hidden: bool) -> list[_Case]:
    rng = np.random.default_rng(HIDDEN_SEED + 10 if hidden else VISIBLE_SEED + 10)
    out = []
    for c in _array_cases(rng, hidden, params=True, eps_arg=True):
        x, gamma, _, eps = c.args
        dout = rng.standard_normal(x.shape).astype(x.dtype)
        exp = _backward64(dout, x, gamma, eps)
        tols = []
        base = c.tol[0][0]
        for e in exp:
            scale = float(np.abs(e.astype(np.float64)).max(initial=0.0)) + 1.0
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
        check="check_layer_norm_backward",
        fname="layer_norm_backward",
        argnames=("dout", "x", "gamma", "eps"),
        outnames=("dx", "dgamma", "dbeta"),
        expected=v(),
        variants=[
            ("dx treats the mean and the variance as constants (dx = dout · gamma / std). Both depend on every "
             "feature of the row: dx = rstd · (g − mean(g) − xhat · mean(g · xhat)), with g = dout · gamma.",
             v(drop=("mean", "xhat"))),
            ("dx is missing the term that comes through the variance: − xhat · mean(g · xhat).", v(drop=("xhat",))),
            ("dx is missing the term that comes through the mean: − mean(g).", v(drop=("mean",))),
            ("gamma is missing from dx: the gradient reaching the normalized values is g = dout · gamma.",
             v(no_gamma=True)),
            ("the variance is the unbiased one (dividing by C - 1); the forward pass divides by C.", v(ddof=1)),
            ("eps is outside the square root: rstd = 1 / sqrt(var + eps).", v(eps_outside=True)),
            ("dgamma multiplies dout by x; it must multiply by the normalized xhat = (x − mean) · rstd.",
             v(x_for_dgamma=True)),
            ("dgamma and dbeta are summed over axis 0 only; sum them over every leading axis (every token of every "
             "sequence) so that each has shape (C,).", v(sum_axis0=True)),
            ("dgamma and dbeta come back swapped: return (dx, dgamma, dbeta).", v(swap=True)),
        ],
        tag_rules=[("offset", _CANCEL), ("f16big", _F16)],
        spy_extra=_autograd_spy,
        spy_name="autograd",
        select=select,
        contract_only=contract,
    )
    _run(spec, layer_norm_backward, _backward_cases(hidden))


# --- chapter 8 ----------------------------------------------------------------------------------------------------


def _two_pass_spy(frame, event, arg):
    if event == "call":
        code = frame.f_code
        if code.co_name in ("_var", "_std") and code.co_filename.replace("\\", "/").endswith("numpy/_core/_methods.py"):
            return f"np.{code.co_name[1:]} (or the array's .{code.co_name[1:]}() method), which makes two passes,"
    return None


def _running_cases(hidden: bool) -> list[_Case]:
    cases = _stats_cases(hidden)
    rng = np.random.default_rng(HIDDEN_SEED + 11 if hidden else VISIBLE_SEED + 11)
    extra = [((4, 32), np.float64, 1e9, 1.0), ((3, 16), np.float32, 3e4, 1.0)] if not hidden else [
        ((5, 24), np.float64, -4e9, 2.0), ((2, 3, 16), np.float32, 2e4, 1.0)]
    for shape, dtype, offset, scale in extra:
        x = _rows(rng, shape, dtype, offset, scale)
        t = _tol(dtype)
        cases.append(_Case((x,), f"{np.dtype(dtype)} rows whose mean is about {offset:g}", frozenset({"offset"}),
                           [(t, t * abs(offset)), (1e-3, 1e-3 * scale * scale)]))
    return cases


def check_running_stats(running_stats: Callable, hidden: bool = False, part: str = "all") -> None:
    """Check ``running_stats(x) -> (mean, var)``: one pass over each row, stable when values sit far from zero.

    ``part="near-zero"`` runs only the rows near zero, ``part="far-from-zero"`` only the rows far from it (where a
    naive one-pass formula cancels), ``part="contract"`` only the contract (shapes, dtypes, inputs left unchanged,
    no two-pass np.var): the graded notebook scores them separately.
    """
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    _part(part, ("all", "near-zero", "far-from-zero", "contract"))
    cases = _running_cases(hidden)
    if part in ("near-zero", "far-from-zero"):
        cases = [c for c in cases if ("offset" in c.tags) == (part == "far-from-zero")]
    spec = _Spec(
        check="check_running_stats",
        fname="running_stats",
        argnames=("x",),
        outnames=("mean", "var"),
        expected=_stats_variant(),
        variants=[
            (_UNBIASED.replace("`np.var(x, axis=-1)` with its default `ddof=0`, or `((x - mean)**2).mean(axis=-1)`",
                               "divide the running sum of squared deviations (Welford's M2) by n, not n − 1"),
             _stats_variant(ddof=1)),
            ("the two values come back in the wrong order: return `(mean, var)`.", _stats_variant(what="varmean")),
            ("the second value is the standard deviation; return the variance.", _stats_variant(what="meanstd")),
        ],
        tag_rules=[("offset", "the variance loses its accuracy when the values sit far from zero: a one-pass sum of "
                              "x and of x² cancels catastrophically (E[x²] − E[x]²). Keep a running mean and a "
                              "running sum of squared deviations from it (Welford's update) instead."),
                   ("f16big", _F16)],
        spy_extra=_two_pass_spy,
        spy_name="two_pass",
        contract_only=part == "contract",
    )
    _run(spec, running_stats, cases)


# Spies by name, for the student server (lnkit.grading.server), which runs the student's function out of the kernel.
_SPIES = {"autograd": _autograd_spy, "two_pass": _two_pass_spy}
