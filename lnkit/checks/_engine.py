"""The engine every chapter's checks share: cases, calling the student's function, comparing, diagnosing, messages.

A check builds a :class:`_Spec` (the function's name, its reference answers, the known mistakes with their messages)
and a list of :class:`_Case` inputs, and hands both to :func:`_run`. The hidden cases of the graded notebooks come from
:func:`_rng`: out of the student's kernel (nbgrader_sandbox) it is seeded from a key the grader derives from the
instructor's secret, the student and the submission's content, which is not in this package, so knowing every line of
it does not tell the hidden inputs, and the inputs one grading drew fit no other submission. A message about a hidden
case names its kind, the mistake and the chapter's section, never its values, what was expected or what the function
returned (see :func:`_hidden_case`); every piece of the student's own text in a message is cut to a bounded length.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import hashlib
import math
import os
import re
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VISIBLE_SEED = 20160721  # Ba, Kiros and Hinton put "Layer Normalization" on arXiv on 21 July 2016
# The hidden cases a student can run in their own kernel (`hidden=True`). Graded hidden cases come from a key derived
# from the instructor's secret instead (set_hidden_secret), which no student can read.
HIDDEN_SEED = 1706_03762  # "Attention is all you need"
_hidden_secret: bytes | None = None


def set_hidden_secret(secret: bytes | None) -> None:
    """Draw every hidden case from ``secret`` from now on (None: back to the public HIDDEN_SEED).

    nbgrader_sandbox's checker calls it with the key of the submission it grades (an HMAC of the course's secret, the
    student, the assignment, the notebook and the submission's content; nbgrader_sandbox.intake.hidden_cases_key) before
    it runs the instructor's test cells, so the graded hidden inputs cannot be rebuilt from this package's source, and
    differ for every student and every submission.
    """
    global _hidden_secret
    if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
        raise ValueError(f"secret: expected at least 16 bytes; got {type(secret).__name__} of length "
                         f"{len(secret) if isinstance(secret, (bytes, str)) else '?'}")
    _hidden_secret = secret


def _rng(hidden: bool, stream: int) -> np.random.Generator:
    """The random generator of one check's cases: visible cases from the public seed, hidden ones from the secret."""
    if not hidden:
        return np.random.default_rng(VISIBLE_SEED + stream)
    if _hidden_secret is None:
        return np.random.default_rng(HIDDEN_SEED + stream)
    digest = hashlib.sha256(_hidden_secret + b"/hidden/" + str(stream).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))

# Relative accuracy we demand of an answer, by the dtype it is returned in (float16 answers are rounded to ~1e-3).
_BASE_TOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-5, np.dtype(np.float16): 4e-3}


# --- cases --------------------------------------------------------------------------------------------------------


@dataclass
class _Case:
    args: tuple  # positional arguments, in the order of `argnames`
    desc: str = ""  # what is special about this input, in words
    tags: frozenset = frozenset()  # "constant", "offset", "tiny", "f16big", "eps", "zero" ...
    tol: Sequence[tuple[float, float]] | None = None  # (rtol, atol) per output
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
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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

# How much of the student's own text a message quotes: a type name, an exception's message, a repr. Longer text is cut
# and says so (a 24 MB exception class name would otherwise make a 24 MB message, feedback page and notebook).
NAME_CHARS = 200
MESSAGE_CHARS = 2000
REPR_CHARS = 300
CUT_MARK = " ... (cut)"


def _cut(text, limit: int) -> str:
    """``text`` as a str of at most ``limit`` characters plus the cut mark when it was longer."""
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[:limit] + CUT_MARK


def _safe_repr(v) -> str:
    """repr of a value the student's function returned, cut; a repr that fails is named, not raised."""
    try:
        return _cut(repr(v), REPR_CHARS)
    except Exception:  # noqa: BLE001 - a student's object whose __repr__ fails
        return f"<a {_cut(type(v).__name__, NAME_CHARS)} that cannot be shown>"


# Exception classes whose name a message about a hidden case may show: Python's and NumPy's own. A class the student
# made has a name they chose, which could spell out the hidden input.
_PUBLIC_ERRORS = frozenset(
    [n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)]
    + [n for n in dir(getattr(np, "exceptions", None) or object()) if n[:1].isupper()]
)


def _error_name(type_name: str) -> str:
    """How a message about a hidden case names the student's exception: by its name if it is a built-in one."""
    return type_name if type_name in _PUBLIC_ERRORS else "an exception of a class of its own"


def _hidden_case(spec: _Spec, case: _Case) -> str:
    """A hidden case in words, without any of its values: the kind of input (its description), and the dtype and
    number of axes of each array argument. Nothing here tells an input apart from another of its kind, so no table of
    inputs and answers can be built from messages; the values themselves are drawn afresh for every submission."""
    kind = case.desc or "random"
    args = []
    for name, a in zip(spec.argnames, case.args):
        if isinstance(a, np.ndarray):
            args.append(f"{name}: {a.dtype} with {_axes(a.ndim)}")
        elif callable(a):
            args.append(f"{name}: a function")
        else:
            args.append(f"{name}: a {type(a).__name__}")
    return f"a hidden case ({kind}; {', '.join(args)}); hidden inputs and answers are not shown"


def _axes(n: int) -> str:
    return f"{n} axis" if n == 1 else f"{n} axes"


def _show_case(spec: _Spec, case: _Case) -> str:
    """The input of a failing case as a message shows it: a visible case in full, a hidden one by its kind only."""
    return _hidden_case(spec, case) if spec.hidden else _show_input(spec.fname, spec.argnames, case)


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
    return _safe_repr(v)


# --- the engine ---------------------------------------------------------------------------------------------------


class _Stop(Exception):
    """A problem so specific that there is nothing to diagnose: report it at once."""


@dataclass
class _Failure:
    case: _Case
    kind: str  # "error", "shape", "nonfinite", "values", "dtype", "type"
    got: tuple | None = None
    detail: str = ""
    error_type: str = ""  # for kind "error": the name of the exception's class (the student's choice)


@dataclass
class _Spec:
    check: str  # "check_layer_norm"
    fname: str  # "layer_norm"
    argnames: tuple
    outnames: tuple  # ("output",) for a function returning one value; ("mean", "var") for a pair
    expected: Callable[[_Case], tuple]  # the right answers, as a tuple
    # (what the mistake is, its answers) or (..., tag): show a failing case with that tag when there is one
    variants: Sequence[tuple] = ()
    tag_rules: Sequence[tuple[str, str]] = ()  # (tag, message) when every failing case has the tag
    lnkit_files: Sequence[str] = ("norms.py", "blocked.py", "_torch.py")
    integers: bool = False  # the answers are Python ints
    scalars: bool = False  # the answers are real numbers: a Python float or a NumPy floating scalar, any precision
    spy_extra: Callable | None = None  # one more profiler rule, in the student's own kernel only (never graded on)
    select: tuple | None = None  # grade only these outputs (indices into outnames); the others are not compared
    returns: tuple = ()  # every output the function returns (set by _run)
    contract_only: bool = False  # check only the contract: types, shapes, dtypes, inputs left alone, no reference
    # Out of the kernel (nbgrader_sandbox), the student's function runs in another process, where each name in stand_in
    # is replaced during the call by the stand-in the grading makes from its parameters (chapter 5's rms_norm, made
    # from its factor). No profiler runs there: that process is the student's, and so would be its findings.
    stand_in: dict = field(default_factory=dict)
    # False where the right value would give the exercise away (a count whose rule the student must derive): the
    # message then shows the input and what the function returned, not what it should have returned
    show_expected: bool = True
    # where the chapter explains it, as `chapter N, "Section"`: a wrong answer's message ends its first sentence
    # with it unless the message names a section itself
    section: str = ""
    hidden: bool = False  # set by _run: the cases are hidden, so no message shows an input, an answer or a result


def _fresh(a):
    return a.copy() if isinstance(a, np.ndarray) else a


def _as_tuple(spec: _Spec, out, case: _Case) -> tuple:
    names = spec.returns or spec.outnames
    n = len(names)
    if n == 1:
        return (out,)
    if not isinstance(out, (tuple, list)) or len(out) != n:
        what = _cut(type(out).__name__, NAME_CHARS)
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
        variants=[(m, pick(v), *rest) for m, v, *rest in spec.variants],
    )


def _not_written(spec: _Spec) -> _Stop:
    return _Stop(
        f"{spec.fname} is not written yet: it raises NotImplementedError. Replace the line "
        f"`raise NotImplementedError()` with your code."
    )


def _grader_proxy():
    """The grader's public protocol (nbgrader_sandbox.proxy) when grading runs in this process, else None. Never
    imported from here: students have no grader, and where it is not loaded no student function can be a proxy."""
    return sys.modules.get("nbgrader_sandbox.proxy")


def _call_remote(spec: _Spec, student, case: _Case, args: tuple, proxy):
    """The student's function runs in their sandbox (nbgrader_sandbox): ``(out, args as they are after the call)``.

    What comes back is plain data rebuilt from bytes; every way the call can go wrong arrives as one of the proxy's
    StudentCodeProblem exceptions, which says itself to the student.
    """
    try:
        out, after = student.remote_call(args, {}, stand_in=spec.stand_in)
    except proxy.StudentRaised as e:
        if e.type_name == "NotImplementedError":
            raise _not_written(spec) from None
        return _Failure(case, "error", detail=_error_detail(e.type_name, e.message), error_type=e.type_name), args
    except proxy.ReferenceCalled as e:
        raise _Stop(_reference_message(spec, e.called)) from None
    except proxy.StudentCodeProblem as e:
        raise _Stop(f"{_cut(e.describe(spec.fname), MESSAGE_CHARS)}\n  input: {_show_case(spec, case)}") from None
    after = tuple(a if b is None else b for a, b in zip(args, list(after) + [None] * len(args)))
    return out, after


def _call(spec: _Spec, student: Callable, case: _Case) -> tuple:
    args = tuple(_fresh(a) for a in case.args)
    proxy = _grader_proxy()
    if proxy is not None and isinstance(student, proxy.StudentFunction):
        out, args = _call_remote(spec, student, case, args, proxy)
        if isinstance(out, _Failure):
            return out
        return _checked_call(spec, case, args, out)
    spy = _Spy(spec.lnkit_files, spec.spy_extra)
    try:
        with spy:
            out = student(*args)
    except NotImplementedError:
        if spy.called:
            raise _Stop(_reference_message(spec, spy.called)) from None
        raise _not_written(spec) from None
    except _Stop:
        raise
    except Exception as e:  # noqa: BLE001 - any error of the student's is reported, with its input
        if spy.called:
            raise _Stop(_reference_message(spec, spy.called)) from None
        return _Failure(case, "error", detail=_error_detail(type(e).__name__, _message_of(e)),
                        error_type=type(e).__name__)
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
                    f"  input: {_show_case(spec, case)}"
                )
    return _as_tuple(spec, out, case)


def _error_detail(type_name, message) -> str:
    """``TypeName: message`` of the student's exception, each part cut to its length."""
    return f"{_cut(type_name, NAME_CHARS)}: {_cut(message, MESSAGE_CHARS)}"


def _message_of(e: BaseException) -> str:
    try:
        return _cut(str(e), MESSAGE_CHARS)
    except Exception:  # noqa: BLE001 - a student's exception whose __str__ fails
        return "(its message cannot be shown)"


# What a reference called on a hidden case may be named as: a short dotted name of a refused module. Any other text
# came from the student's code (a made-up attribute name) and could spell out the hidden input.
_REFERENCE_NAME = re.compile(r"(lnkit|torch|np|numpy)(\.[A-Za-z_][A-Za-z0-9_]{0,40}){1,5}")


def _reference_message(spec: _Spec, called: str) -> str:
    called = _cut(called, NAME_CHARS)
    if spec.hidden and not _REFERENCE_NAME.fullmatch(called):
        called = "a reference implementation (a function of lnkit or torch)"
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
                return _Failure(case, "type", got, f"{name}: returned {_returned(spec, g)}, not an int")
            if int(g) != e:
                return _Failure(case, "values", got)
            if not isinstance(g, int):
                return _Failure(case, "type", got, f"it returned {_returned(spec, g, module=True)}, "
                                                   f"not a plain Python int: wrap the result in `int(...)`")
            continue
        if spec.scalars:
            if isinstance(g, bool) or not isinstance(g, (int, float, np.integer, np.floating)):
                return _Failure(case, "type", got, f"{name}: returned {_returned(spec, g)}, not a number")
            rtol, atol = tols[i]
            if not np.isfinite(float(g)):
                return _Failure(case, "nonfinite", got, f"{name} is NaN or inf")
            if not np.isclose(float(g), float(e), rtol=rtol, atol=atol):
                return _Failure(case, "values", got, f"{name}")
            continue
        ga = _to_array(g)
        if ga is None:
            return _Failure(case, "type", got, f"{name} is a {_cut(type(g).__name__, NAME_CHARS)}, not a NumPy array")
        if ga.shape != e.shape:
            if spec.hidden:  # the sizes would tell the hidden input's shape; the number of axes is in its kind
                return _Failure(case, "shape", got, f"{name} has {_axes(ga.ndim)}; the right answer has {_axes(e.ndim)}"
                                if ga.ndim != e.ndim else f"{name} has the right number of axes, but not their sizes")
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
    if not (spec.integers or spec.scalars):
        for i, (g, e) in enumerate(zip(got, expected)):
            ga = np.asarray(g)
            if ga.dtype != e.dtype:
                return _Failure(case, "dtype", got, f"{spec.outnames[i]} is {ga.dtype}; expected {e.dtype}")
    return None


def _returned(spec: _Spec, g, module: bool = False) -> str:
    """What the function returned, for a message: its type, and its value unless the case is hidden."""
    t = type(g)
    name = _cut(f"{t.__module__}.{t.__name__}" if module else t.__name__, NAME_CHARS)
    return name if spec.hidden else f"{name} {_safe_repr(g)}"


def _matches(spec: _Spec, case: _Case, got: tuple, answer: tuple) -> bool:
    tols = case.tol or [(1e-9, 1e-9)] * len(answer)
    for i, (g, a) in enumerate(zip(got, answer)):
        if spec.integers:
            if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or int(g) != a:
                return False
            continue
        if spec.scalars:
            rtol, atol = tols[i]
            if isinstance(g, bool) or not isinstance(g, (int, float, np.integer, np.floating)) or \
                    not np.isclose(float(g), float(a), rtol=rtol, atol=atol):
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
    show = lambda f: _show_case(spec, f.case)  # noqa: E731
    wrong = [f for f in failures if f.kind in ("shape", "nonfinite", "values")]

    # 1. does every failing case share a property that explains it (rows far from zero, float16 overflow)?
    if wrong and len(wrong) == len(failures):
        for tag, message in spec.tag_rules:
            if all(tag in f.case.tags for f in wrong):
                return _with_io(spec, message, wrong[0])

    # 2. which known mistake reproduces the student's answers on the most failing cases?
    best, best_hits, best_case = None, 0, None
    for message, variant, *prefer in spec.variants:
        hits, where = 0, None
        rank = lambda f: (bool(prefer) and prefer[0] in f.case.tags, "zero" not in f.case.tags)  # noqa: E731
        for f in wrong:
            try:
                answer = variant(f.case)
            except Exception:  # noqa: BLE001 - a variant that does not apply to this input
                continue
            if answer is None:
                continue
            if _matches(spec, f.case, f.got, answer):
                hits += 1
                # show the smallest input that reproduces it, preferring the variant's tag, then a non-empty one
                if where is None or rank(f) > rank(where):
                    where = f
        if hits > best_hits and 2 * hits >= len(wrong):  # it must explain at least half of the failures
            best, best_hits, best_case = message, hits, where
    if best is not None:
        return _with_io(spec, best, best_case)

    # 3. the same answer whatever the input: hard-coded
    if spec.integers and len(failures) >= 2:
        answers = {repr(f.got) for f in failures if f.got is not None}
        if len(answers) == 1 and len(failures) == len([f for f in failures if f.got is not None]):
            value = "" if spec.hidden else f", {_safe_repr(failures[0].got[0])},"
            return _with_io(spec, f"{spec.fname} returns the same value{value} whatever its "
                                  f"arguments: compute the answer from them rather than writing it in.", first)

    # 4. describe the smallest failure as it is
    if first.kind == "error" and spec.hidden:  # its message, even its class's name, could carry the hidden input
        return (
            f"{spec.fname} raised {_error_name(first.error_type)}; its message is not shown for a hidden case.\n"
            f"  on the input {show(first)}\n  (the smallest of the {len(failures)} failing cases)."
        )
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
    lines = [message, f"  smallest failing input: {_show_case(spec, f.case)}"]
    if spec.hidden:  # neither the answer nor the function's own result: both are made from the hidden input
        return "\n".join(lines)
    expected = spec.expected(f.case)
    if f.got is not None:
        tols = f.case.tol or [(1e-9, 1e-9)] * len(expected)
        for i, (name, e, g) in enumerate(zip(spec.outnames, expected, f.got)):
            label = "" if len(spec.outnames) == 1 else f" {name}"
            if spec.show_expected:
                lines.append(f"  expected{label}: {_show_output(e)}")
            lines.append(f"  got{label}:      {_show_output(g if spec.integers else np.asarray(g))}")
            if not spec.integers:
                lines.extend(_difference(label, e, g, tols[i]))
    return "\n".join(lines)


def _difference(label: str, e, g, tol: tuple[float, float]) -> list[str]:
    """The largest difference and what the check allows there: values that print alike can still differ."""
    ga = _to_array(g)
    if ga is None or ga.shape != np.shape(e) or not ga.size:
        return []
    g64, e64 = ga.astype(np.float64), np.asarray(e, dtype=np.float64)
    err = np.abs(g64 - e64)
    if not np.all(np.isfinite(err)):
        return []
    allowed = tol[1] + tol[0] * np.abs(e64)
    i = np.unravel_index(int(np.argmax(err - allowed)), err.shape)
    if err[i] <= allowed[i]:
        return []
    where = f" at index {tuple(int(k) for k in i)}" if ga.ndim else ""
    return [f"  largest difference{label}: {err[i]:.2g}{where}, where the check allows {allowed[i]:.2g}"]


class CheckFailed(AssertionError):
    """What a failing check raises: an AssertionError (nbgrader and pytest treat it as a failed test) that shows
    itself as its message alone.

    IPython asks an exception for ``_render_traceback_`` before it formats frames, so a notebook (and nbgrader's
    Validate, which prints the notebook's error output) shows the check's message, wrapped to fit Validate's 90
    columns, and no frame, file path or docstring of lnkit. ``str()`` of it stays the unwrapped message: the
    feedback and the out-of-kernel grading quote that.
    """

    WIDTH = 84  # nbgrader's Validate indents by 4 and cuts lines longer than 87 characters

    def _render_traceback_(self) -> list[str]:
        return _wrap(str(self), self.WIDTH).split("\n")


def _wrap(message: str, width: int) -> str:
    """Wrap each line of ``message`` at ``width``, continuing a line at its own indentation plus two spaces."""
    out = []
    for line in message.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip(" ")))
        out.extend(textwrap.wrap(line, width, subsequent_indent=indent + "  ", break_on_hyphens=False,
                                 break_long_words=True) or [""])
    return "\n".join(out)


def _fail(message: str) -> None:
    """The one place a check fails from; the exception shows its message only (see CheckFailed)."""
    raise CheckFailed(message)


def _run(spec: _Spec, student: Callable, cases: list[_Case], *, hidden: bool) -> None:
    """Run every case, then pass (print a line) or fail with one diagnosed message. ``hidden`` (no default: every
    check must say) keeps the cases' values, the answers and the function's results out of every message."""
    __tracebackhide__ = True  # IPython and pytest show the message, not the check's own frames
    if not callable(student):
        _fail(f"{spec.check}: pass your function itself, as in `{spec.check}({spec.fname})`; "
              f"got {_cut(type(student).__name__, NAME_CHARS)}.")
    spec = dataclasses.replace(spec, hidden=bool(hidden))
    if spec.select:  # each case's tolerances follow the outputs that are compared
        cases = [c if not c.tol else dataclasses.replace(c, tol=[c.tol[i] for i in spec.select]) for c in cases]
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
            first, _, rest = message.partition("\n")
            wrong_values = any(f.kind in ("values", "nonfinite", "shape") for f in failures)
            # a hidden case's message has no input to study: the section is where to look
            if spec.section and (wrong_values or spec.hidden) and "chapter " not in first:
                message = f"{first} See {spec.section}." + ("\n" + rest if rest else "")
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


def _spread_cond(x: np.ndarray, axes) -> float:
    """How badly normalizing x over axes is conditioned: the largest |value| / spread of any group (1 for none).

    Random groups of a few values can come out nearly constant: their own spread, not the one the case asked for,
    says how many digits a correct answer keeps in x's dtype. Exactly constant groups are left out: their answer is
    exact (see _array_cases).
    """
    if not x.size:
        return 1.0
    x64 = x.astype(np.float64)
    spread = x64.std(axis=axes)
    top = np.abs(x64).max(axis=axes)
    live = spread > 0
    return float((top[live] / spread[live]).max()) if live.any() else 1.0


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
            # a multiple of 1/2: any sum of the row is exact in every dtype, so its mean is the value itself and
            # x - mean is exactly 0, whatever order a correct implementation adds in (else float32 rounding,
            # divided by sqrt(eps), fails correct answers on some hidden inputs)
            x[..., 1, :] = x.dtype.type(round(2 * (offset + 2.5 * scale)) / 2)
            desc = (desc + ", " if desc else "") + "one constant row per matrix"
            tags = tags | {"constant"}
        if "f16big" in tags:  # one value per row whose square is beyond float16's range, whatever the seed
            x[..., 0] = x.dtype.type(3.0 * scale)
        c = x.shape[-1]
        cond = 1.0 + abs(offset) / scale
        if hidden:
            cond = max(cond, _spread_cond(x, -1))
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
        passed = f"eps={eps}" if not hidden else "an eps other than the default"  # a hidden one is drawn: not said
        cases.append(_Case(args + (eps,), f"{passed} is passed, and the variance (about 2.5e-3) is near it",
                           frozenset({"eps"}), [(1e-9, 1e-9)] * 2))
    return cases


def _in_dtype(x: np.ndarray) -> np.dtype:
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)


def _ln64(x, gamma, beta, eps, *, axis=(-1,), ddof=0, eps_outside=False, divide_by_var=False,
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
