"""The student server: runs a student's code in a process of its own and serves calls to its functions.

Started by :class:`lnkit.grading.remote.StudentServer` as ``python -I -m lnkit.grading.server IN_FD OUT_FD`` in a
private empty folder, with its stdout and stderr on /dev/null and limits on memory and CPU (and, as root, as an
unprivileged user). It never sees a test: it receives the student's code, executes it cell by cell as a notebook
would, and answers ``call`` requests (function name and plain arguments in; plain result and the arguments as they
are after the call out).

Before every call, lnkit's reference functions and torch's normalization functions are made to refuse to run (their
code is swapped for a stub that raises), and the check's profiler (``lnkit.checks._Spy``) watches the call as it
does in the notebook. Every exception, ``SystemExit`` and ``KeyboardInterrupt`` included, becomes a reply; a
process that dies (``os._exit``, the memory limit, a crash) leaves the checker an end of file, which it reports.
"""

from __future__ import annotations

import builtins
import os
import sys
import types

import numpy as np

from lnkit.checks import _engine
from lnkit.checks.ch05_rmsnorm import _stand_in
from lnkit.checks.ch06_pre_post_ln import _Linear, _Norm
from lnkit.checks.ch07_backward import _autograd_spy
from lnkit.checks.ch08_speed import _two_pass_spy

_SPIES = {"autograd": _autograd_spy, "two_pass": _two_pass_spy}

from . import wire

_LNKIT_MODULES = {"norms.py": "lnkit.norms", "_torch.py": "lnkit._torch", "gpt2.py": "lnkit.gpt2"}
_REFUSAL = "__lnkit_refused__"


class ReferenceRefused(BaseException):
    """Raised by a poisoned reference function. A BaseException so that `except Exception` in student code misses it."""


class _Refusals:
    """Remembers the first reference the student's code tried to call (even if it caught the exception)."""

    def __init__(self):
        self.called: str | None = None

    def __call__(self, name: str):
        if self.called is None:
            self.called = name
        raise ReferenceRefused(name)


REFUSALS = _Refusals()


def _poison_function(func, qualname: str) -> None:
    """Swap func's code for a stub that refuses: every alias of func (`from lnkit import layer_norm as ln`) refuses."""
    if not isinstance(func, types.FunctionType) or func.__code__.co_freevars:
        return
    if getattr(func, "__lnkit_poisoned__", False):
        return
    namespace: dict = {}
    exec(f"def stub(*args, **kwargs):\n    {_REFUSAL}({qualname!r})\n", namespace)  # noqa: S102 - our own text
    func.__globals__[_REFUSAL] = REFUSALS
    func.__code__ = namespace["stub"].__code__
    func.__lnkit_poisoned__ = True


def poison_references(lnkit_files) -> None:
    """Make lnkit's reference functions of the spec's files, and torch's norms (if imported), refuse to run."""
    for fname in lnkit_files:
        module = sys.modules.get(_LNKIT_MODULES.get(fname, ""))
        if module is None:
            continue
        prefix = "lnkit." if fname in ("norms.py", "_torch.py") else f"lnkit.{fname[:-3]}."
        for name, value in list(vars(module).items()):
            if not name.startswith("_") and isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
                _poison_function(value, prefix + name)
    torch = sys.modules.get("torch")
    functional = sys.modules.get("torch.nn.functional")
    if functional is not None:
        for name in _engine._TORCH_PY:
            if isinstance(getattr(functional, name, None), types.FunctionType):
                _poison_function(getattr(functional, name), f"torch.nn.functional.{name}")
    if torch is not None:
        for name in _engine._TORCH_C:
            if callable(getattr(torch, name, None)) and not getattr(getattr(torch, name), "__lnkit_poisoned__", 0):
                stub = _c_stub(f"torch.{name}")
                setattr(torch, name, stub)


def _c_stub(qualname: str):
    def stub(*args, **kwargs):
        REFUSALS(qualname)

    stub.__lnkit_poisoned__ = True
    return stub


def _rebuilders() -> dict:
    """The callables chapter 6's checks pass (a sublayer, a norm), rebuilt here from their plain arrays."""

    def linear(state):
        obj = _Linear.__new__(_Linear)
        obj.__dict__.update(state)
        return obj

    def norm(state):
        obj = _Norm.__new__(_Norm)
        obj.__dict__.update(state)
        return obj

    return {"Linear": linear, "Norm": norm}


class Server:
    def __init__(self, rfd: int, wfd: int):
        self.rfd, self.wfd = rfd, wfd
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins}

    def load(self, cells: list[str]) -> dict:
        errors = []
        for i, source in enumerate(cells):
            try:
                exec(compile(source, f"<cell {i}>", "exec"), self.namespace)  # noqa: S102 - the student's code, here
            except BaseException as e:  # noqa: BLE001 - a notebook goes on after a failing cell
                errors.append({"cell": i, "type": type(e).__name__, "message": _message(e)})
        callables = sorted(k for k, v in self.namespace.items() if not k.startswith("__") and callable(v)
                           and not isinstance(v, type) and not isinstance(v, types.ModuleType))
        return {"status": "ok", "callables": callables, "errors": errors}

    def call(self, request: dict, blobs: list) -> tuple[dict, list]:
        name = request["name"]
        func = self.namespace.get(name)
        if not callable(func):
            return {"status": "missing", "message": f"{name} is not defined by the notebook's code"}, []
        rebuild = _rebuilders()
        args = wire.decode_value(request["args"], blobs, rebuild)
        kwargs = wire.decode_value(request["kwargs"], blobs, rebuild)
        poison_references(request.get("lnkit_files", ()))
        spy = _engine._Spy(request.get("lnkit_files", ()), _SPIES.get(request.get("spy") or ""))
        used: dict = {}
        swapped = {}
        for stand in request.get("stand_in", ()):
            if callable(self.namespace.get(stand)):
                swapped[stand] = self.namespace[stand]
                self.namespace[stand] = _stand_in(stand, used)
        REFUSALS.called = None
        reply: dict
        try:
            with spy:
                out = func(*args, **kwargs)
            reply = {"status": "ok"}
        except ReferenceRefused:
            reply = {"status": "reference"}
        except MemoryError as e:
            reply = {"status": "memory", "message": _message(e)}
        except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too: the student's doing
            reply = {"status": "raised", "type": type(e).__name__, "message": _message(e)}
        finally:
            self.namespace.update(swapped)
        called = REFUSALS.called or spy.called
        if called:
            return {"status": "reference", "called": called}, []
        out_blobs: list = []
        if reply["status"] == "ok":
            reply["result"] = wire.encode_value(out, out_blobs)
        reply["args_after"] = [wire.encode_value(a, out_blobs) if type(a) is np.ndarray else None for a in args]
        reply["stand_in_used"] = sorted(used)
        return reply, out_blobs

    def serve(self) -> None:
        while True:
            try:
                request, blobs = wire.read_frame(self.rfd)
            except wire.WireError:
                return  # the checker is gone
            op = request.get("op")
            if op == "load":
                reply, out = self.load(request["cells"]), []
            elif op == "call":
                reply, out = self.call(request, blobs)
            elif op == "bye":
                return
            else:
                reply, out = {"status": "error", "message": f"unknown op {op!r}"}, []
            wire.write_frame(self.wfd, reply, out)


def _message(e: BaseException) -> str:
    try:
        return str(e)[:2000]
    except BaseException:  # noqa: BLE001 - a student's exception whose __str__ fails
        return f"<{type(e).__name__} whose message cannot be shown>"


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -I -m lnkit.grading.server IN_FD OUT_FD")
    rfd, wfd = int(argv[0]), int(argv[1])
    sys.setrecursionlimit(10_000)  # deep enough for honest recursion; deeper is a RecursionError, not a crash
    Server(rfd, wfd).serve()
    os._exit(0)  # skip atexit handlers the student may have registered


if __name__ == "__main__":
    main(sys.argv[1:])
