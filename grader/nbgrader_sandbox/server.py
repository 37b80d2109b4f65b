"""The student server: runs one student's code inside their sandbox and serves calls to its functions.

:class:`nbgrader_sandbox.remote.StudentServer` starts it inside a bubblewrap sandbox (:mod:`.sandbox`) that holds the
standard library, the packages the assignment allows (NumPy for most) and this file with :mod:`.wire` beside it,
nothing more: the course's packages are not there, and neither are its checks, their reference answers or the hidden
tests. It imports nothing of the grader but :mod:`.wire`; it talks to the checker over two pipes (file descriptors
given on the command line).

It executes the notebook's code cells in order, as a notebook would (a failing cell does not stop the next), then
answers ``call`` requests: function name and plain arguments in; the plain result and the arguments as they are
after the call out. Importing one of the course's refused packages (its ``REFERENCES``, and for example ``torch``
where the assignment does not grant it; see :mod:`.course`) gives a stand-in module with no code in it: calling
anything from it raises :class:`ReferenceRefused`, which the check reports as "you called a reference instead of
writing it". Every exception, ``SystemExit`` and ``KeyboardInterrupt`` included, becomes a reply; a process that dies
leaves the checker an end of file, which it reports.

What the checker sends besides the student's code is plain source the course registered and the checker chooses per
call: the classes that rebuild objects the checks pass (the course's ``CARRIED``), and, in a separate server used for
nothing else, a stand-in that replaces one of the notebook's names during a call (``STAND_INS``, made per call by
``make_<name>(*params)``).

This process is the student's: their code can patch this module, the clock, the profiler, anything in it. So a reply
carries values, and only values: what the student's functions return and leave behind, which any function the
student could have written might give. Nothing in a reply says how an answer was computed or how long it took; the
checker measures time from outside (the kernel's count of this sandbox's CPU seconds, see
:attr:`nbgrader_sandbox.remote.StudentServer.cpu_used`). Each field, and why it is safe to read:

- ``load``: ``errors`` (the cells that raised, by type and message) is recorded in the graded notebook's metadata,
  never scored; ``names`` says what each name a test cell reads is. A function is called here; plain data is a value the
  test cell judges, as it would the kernel's variable; a module or a class is named, and the checker imports its own
  copy, from the standard library or the granted packages only, so a name never brings the student's code out.
- ``call``: ``status`` other than ``ok`` (``raised``, ``reference``, ``memory``, ``missing``) only ever fails the
  call; ``called`` (with ``reference``) names what was refused, and can only make the verdict worse; ``type`` and
  ``message`` of an exception are the student's text, shown, never trusted (``raised`` fails like any exception);
  ``result`` is the value the check compares; ``args_after`` are the arrays as the call left them, compared with the
  inputs (a forged one describes a function that copies its input, which the student could as well have written).
- ``rebind``: ``status`` and ``message`` are not read.

The checker keeps no field that claims something about the computation itself (a time, a flag that a stand-in was
called, a profiler's finding): those were the student's word, and they are gone.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import os
import sys
import types

import numpy as np

try:  # inside the sandbox this file runs next to wire.py, outside any package
    from . import wire
except ImportError:
    import wire  # type: ignore[no-redef]

class ReferenceRefused(BaseException):
    """Raised when student code uses what a refused call gave back. A BaseException: `except Exception` misses it."""


class _Refusals:
    """Every refused name the student's code called during a call (even if it caught the exception)."""

    def __init__(self):
        self.names: list[str] = []

    def reset(self) -> None:
        self.names = []

    @property
    def called(self) -> str | None:
        """The name to report: the first normalization called (F.layer_norm rather than the torch.from_numpy that
        fed it), else the first name called."""
        for name in self.names:
            if "norm" in name.rsplit(".", 1)[-1].lower():
                return name
        return self.names[0] if self.names else None


REFUSALS = _Refusals()
_ABSENT = object()  # a name the notebook does not define, put back as it was after a stand-in's call


class _RefusedName:
    """Any name reached in a refused module. Calling it is recorded and gives back another refused value, so that
    the student's code runs on to the normalization it meant to call (which is the name the check reports); using a
    refused value in any other way (arithmetic, truth, iteration, conversion) raises ReferenceRefused."""

    def __init__(self, qualname: str):
        object.__setattr__(self, "_qualname", qualname)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _RefusedName(f"{self._qualname}.{name}")

    def __call__(self, *args, **kwargs):
        REFUSALS.names.append(self._qualname)
        return _RefusedName(f"{self._qualname}(...)")

    def _refuse(self, *args, **kwargs):
        raise ReferenceRefused(self._qualname)

    __bool__ = __iter__ = __len__ = __getitem__ = __index__ = __int__ = __float__ = __array__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __matmul__ = __rmatmul__ = __pow__ = __neg__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse


class _Refused(types.ModuleType):
    """A module with no code: its attributes are refused names (see :class:`_RefusedName`)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _RefusedName(f"{self.__name__}.{name}")


class _RefuseFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of the refused top-level names (and their submodules) give a :class:`_Refused` module."""

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Refused(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


class Server:
    def __init__(self, rfd: int, wfd: int):
        self.rfd, self.wfd = rfd, wfd
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
        self.support: dict = {"np": np}  # the checker's own helper source, apart from the student's names
        self.stand_ins: dict = {}
        self.removed: dict = {}  # the student's names a test cell deleted (``del squares``), kept for a rebinding

    def load(self, request: dict) -> dict:
        sys.meta_path.insert(0, _RefuseFinder(request.get("refuse", ())))
        for source in request.get("support", ()):
            exec(compile(source, "<grading support>", "exec"), self.support)  # noqa: S102 - the checker's text
        # a stand-in is made per call by the support source's ``make_<name>`` (see call)
        self.stand_ins = {name: self.support[f"make_{name}"] for name in request.get("stand_ins", ())}
        errors = []
        for i, source in enumerate(request["cells"]):
            try:
                exec(compile(source, f"<cell {i}>", "exec"), self.namespace)  # noqa: S102 - the student's code, here
            except BaseException as e:  # noqa: BLE001 - a notebook goes on after a failing cell
                errors.append({"cell": i, "type": _type_name(e), "message": _message(e)})
        blobs: list = []
        names = {name: _describe(self.namespace[name], blobs) for name in request.get("want", ())
                 if isinstance(name, str) and name in self.namespace}
        return {"status": "ok", "errors": errors, "names": names}, blobs

    def rebind(self, request: dict, blobs: list) -> dict:
        """A test cell deleted or assigned one of the notebook's names: do the same here, so that the student's
        functions see it as they would in the kernel (``del squares`` then ``sum_of_squares(1)`` is a NameError).
        The new value is another of the notebook's objects, by name, or plain data; nothing else is accepted."""
        name = request.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            return {"status": "error", "message": "rebind: not a name"}
        if request.get("delete"):
            if name in self.namespace:
                self.removed[name] = self.namespace.pop(name)
            return {"status": "ok"}
        source = request.get("from")
        if isinstance(source, str):
            if source in self.namespace or source in self.removed:
                self.namespace[name] = self.namespace.get(source, self.removed.get(source))
            return {"status": "ok"}
        self.namespace[name] = wire.decode_value(request.get("value"), blobs)
        return {"status": "ok"}

    def _rebuilders(self) -> dict:
        """The classes the checker's support sources defined (the course's carried classes, see
        nbgrader_sandbox.course), each rebuilding its objects from their plain state."""
        return {name: cls.from_state for name, cls in self.support.items()
                if isinstance(cls, type) and callable(getattr(cls, "from_state", None))}

    def call(self, request: dict, blobs: list) -> tuple[dict, list]:
        name = request["name"]
        func = self.namespace.get(name, self.removed.get(name))  # a name deleted by a test cell, called by a copy
        if not callable(func):
            return {"status": "missing", "message": f"{name} is not defined by the notebook's code"}, []
        for source in request.get("support", ()):
            exec(compile(source, "<grading support>", "exec"), self.support)  # noqa: S102 - the checker's text
        rebuild = self._rebuilders()
        args = wire.decode_value(request["args"], blobs, rebuild)
        kwargs = wire.decode_value(request["kwargs"], blobs, rebuild)
        swapped = {}
        stand_in = request.get("stand_in") or {}
        for stand, params in (stand_in.items() if isinstance(stand_in, dict) else ()):
            if stand in self.stand_ins:  # made for this call from the checker's parameters (chapter 5's factor)
                swapped[stand] = self.namespace.get(stand, _ABSENT)
                self.namespace[stand] = self.stand_ins[stand](*params)
        REFUSALS.reset()
        try:
            out = func(*args, **kwargs)
            reply = {"status": "ok"}
        except ReferenceRefused:
            reply = {"status": "reference"}
        except MemoryError as e:
            reply = {"status": "memory", "message": _message(e)}
        except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too: the student's doing
            reply = {"status": "raised", "type": _type_name(e), "message": _message(e)}
        finally:
            for stand, theirs in swapped.items():
                if theirs is _ABSENT:
                    self.namespace.pop(stand, None)
                else:
                    self.namespace[stand] = theirs
        called = REFUSALS.called
        if called:
            return {"status": "reference", "called": called}, []
        out_blobs: list = []
        if reply["status"] == "ok":
            reply["result"] = wire.encode_value(out, out_blobs)
        reply["args_after"] = [wire.encode_value(a, out_blobs) if type(a) is np.ndarray else None for a in args]
        return reply, out_blobs

    def serve(self) -> None:
        while True:
            try:
                request, blobs = wire.read_frame(self.rfd)
            except wire.WireError:
                return  # the checker is gone
            op = request.get("op")
            if op == "load":
                reply, out = self.load(request)
            elif op == "call":
                reply, out = self.call(request, blobs)
            elif op == "rebind":
                try:
                    reply, out = self.rebind(request, blobs), []
                except Exception as e:  # noqa: BLE001 - a value this side cannot rebuild: nothing changes
                    reply, out = {"status": "error", "message": _message(e)}, []
            elif op == "bye":
                return
            else:
                reply, out = {"status": "error", "message": f"unknown op {op!r}"}, []
            wire.write_frame(self.wfd, reply, out)


MAX_VALUE_BYTES = 64 * 1024**2  # the largest variable sent to the checker (a test cell that reads it gets a refusal)


def _describe(value, blobs: list) -> dict:
    """What one of the notebook's global names is, for a test cell that reads it outside the kernel: a function
    (called remotely), a module or a class (by name: the checker imports its own, if it may), or plain data (its
    value, in wire's plain encoding: numbers, strings, lists, tuples, dicts of them and numeric NumPy arrays, never a
    pickle). Anything else is named by its type, and the checker refuses it to the test cell."""
    mark = len(blobs)
    try:
        return _describe_value(value, blobs)
    except BaseException as e:  # noqa: BLE001 - a student's object that fails even to be looked at
        del blobs[mark:]
        return {"kind": "other", "type": f"value that cannot be read ({_type_name(e)})"}


def _describe_value(value, blobs: list) -> dict:
    if isinstance(value, types.ModuleType):
        name = value.__name__ if type(value.__name__) is str else ""
        return {"kind": "module", "module": name}
    if isinstance(value, type):  # a class: the checker imports it itself where it comes from a module it may load
        module, qualname = value.__module__, value.__qualname__
        return {"kind": "class", "module": module if type(module) is str else "",
                "qualname": qualname if type(qualname) is str else ""}
    if callable(value):
        return {"kind": "callable"}
    mark = len(blobs)
    tree = wire.encode_value(value, blobs)
    if sum(len(b) for b in blobs[mark:]) > MAX_VALUE_BYTES:
        del blobs[mark:]
        return {"kind": "other", "type": f"{wire._type_name(value)} larger than {MAX_VALUE_BYTES // 1024**2} MiB"}
    return {"kind": "data", "value": tree}


def _message(e: BaseException) -> str:
    """The exception's message, cut (the checker cuts again: this process is the student's)."""
    try:
        return wire.cut(str(e), wire.MESSAGE_CHARS)
    except BaseException:  # noqa: BLE001 - a student's exception whose __str__ fails
        return f"<{_type_name(e)} whose message cannot be shown>"


def _type_name(e: BaseException) -> str:
    """The name of the exception's class, cut: a class the student made can have a name of any length."""
    name = type(e).__name__
    return wire.cut(name if type(name) is str else "?", wire.NAME_CHARS)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: server.py IN_FD OUT_FD")
    rfd, wfd = int(argv[0]), int(argv[1])
    sys.setrecursionlimit(10_000)  # deep enough for honest recursion; deeper is a RecursionError, not a crash
    Server(rfd, wfd).serve()
    os._exit(0)  # skip atexit handlers the student may have registered


if __name__ == "__main__":
    main(sys.argv[1:])
