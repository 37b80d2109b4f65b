"""The checker's side of the student server: start it, bind each student function to a proxy, report what went wrong.

A :class:`RemoteFunction` is what a test cell's ``check_layer_norm(layer_norm)`` receives when it runs out of the
student's kernel. ``lnkit.checks`` recognizes it (``__lnkit_remote__``) and calls :meth:`RemoteFunction.remote_call`,
which returns plain values rebuilt from bytes, or raises a :class:`RemoteProblem` that the check turns into a
student-facing message: the student's own exception, a reference called, a time limit, the memory limit, a process
that died, a result that is not plain data.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field

from . import sandbox, wire


@dataclass
class Limits:
    """What one student process may use. ``call_seconds`` is per call of a student function."""

    call_seconds: float = 10.0
    start_seconds: float = 20.0  # running the notebook's code before the first call
    memory_bytes: int = 4 * 1024**3  # address space (RLIMIT_AS): torch alone maps about 1 GiB of it
    cpu_seconds: int = 600  # the whole process (RLIMIT_CPU), a backstop behind the per-call limit
    user: str = "nobody"  # run as this user when grading as root

    def __post_init__(self):
        for name in ("call_seconds", "start_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be a positive number of seconds; got {getattr(self, name)!r}")
        if not isinstance(self.memory_bytes, int) or self.memory_bytes < 256 * 1024**2:
            raise ValueError(f"Limits.memory_bytes must be an int of at least 256 MiB; got {self.memory_bytes!r}")


class RemoteProblem(Exception):
    """A call that did not return plain values. ``kind`` says why; ``describe()`` says it to the student."""

    __lnkit_remote_error__ = True
    kind = "problem"

    def describe(self, fname: str) -> str:
        return f"{fname}: {self}"


class StudentRaised(RemoteProblem):
    kind = "raised"

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message = type_name, message


class ReferenceCalled(RemoteProblem):
    kind = "reference"

    def __init__(self, called: str):
        super().__init__(called)
        self.called = called


class CallTimeout(RemoteProblem):
    kind = "timeout"

    def __init__(self, seconds: float, starting: bool = False):
        super().__init__(seconds)
        self.seconds, self.starting = seconds, starting

    def describe(self, fname: str) -> str:
        if self.starting:
            return (f"the notebook's code did not finish running within {self.seconds:g} s, so {fname} could not be "
                    f"tested. Remove long-running or endless code from your cells.")
        return (f"{fname} did not return within the time limit of {self.seconds:g} s per call (an endless loop, "
                f"or far too slow): it was stopped.")


class MemoryLimit(RemoteProblem):
    kind = "memory"

    def __init__(self, limit: int, detail: str = ""):
        super().__init__(detail)
        self.limit = limit

    def describe(self, fname: str) -> str:
        return (f"{fname} ran out of memory: grading gives each student {self.limit / 1024**3:g} GiB, and the call "
                f"tried to allocate more (MemoryError).")


class ProcessDied(RemoteProblem):
    kind = "died"

    def __init__(self, detail: str, starting: bool = False):
        super().__init__(detail)
        self.detail, self.starting = detail, starting

    def describe(self, fname: str) -> str:
        when = "while the notebook's code was running" if self.starting else f"during a call of {fname}"
        return (f"the process running your code stopped {when} ({self.detail}), so {fname} could not be tested. "
                f"Code must never end the process (os._exit, sys.exit in a loop, a crash).")


class RefusedResult(RemoteProblem):
    kind = "refused"

    def __init__(self, type_name: str, why: str):
        super().__init__(f"{type_name} ({why})")
        self.type_name, self.why = type_name, why

    def describe(self, fname: str) -> str:
        return (f"{fname} returned a {self.type_name} ({self.why}), not a plain NumPy array or Python number. "
                f"Return `np.ndarray` results (for example `np.asarray(result)`): an object that is not plain data "
                f"could make any comparison pass, so grading refuses it.")


class NotDefined(RemoteProblem):
    kind = "missing"

    def describe(self, fname: str) -> str:
        return (f"{fname} is not defined by your notebook's code (a NameError): run the cell that defines it, and "
                f"keep its name as given.")


def _special(v):
    """Chapter 6's sublayer and norm: sent as their plain arrays and rebuilt on the server."""
    from lnkit.checks.ch06_pre_post_ln import _Linear, _Norm

    if type(v) is _Linear:
        return "Linear", {k: val for k, val in vars(v).items() if k != "__doc__"} | {"__doc__": v.__doc__}
    if type(v) is _Norm:
        return "Norm", {k: val for k, val in vars(v).items() if k != "__doc__"} | {"__doc__": v.__doc__}
    return None


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class StudentServer:
    """One student's code, running in a process of its own; restarted after a call that killed or stopped it."""

    def __init__(self, cells: list[str], limits: Limits | None = None):
        if not isinstance(cells, list) or not all(isinstance(c, str) for c in cells):
            raise TypeError("cells must be a list of source strings (the notebook's code cells)")
        self.cells = cells
        self.limits = limits or Limits()
        self.proc: subprocess.Popen | None = None
        self.start_problem: RemoteProblem | None = None
        self.callables: list[str] = []
        self.load_errors: list[dict] = []
        self.events: list[dict] = []  # what happened, for the integrity report
        self.box = sandbox.sandbox(self.limits.user)
        self.as_user = self.box.user
        self._dir: str | None = None

    # --- process ---------------------------------------------------------------------------------------------------

    def _spawn(self) -> None:
        self._dir = self.box.private_dir("lnkit-student-")
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        limits = self.limits

        def restrict():
            sandbox.set_limits(limits.memory_bytes, limits.cpu_seconds)

        env = {"PATH": "/usr/bin:/bin", "HOME": self._dir, "TMPDIR": self._dir, "LANG": "C.UTF-8",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
        self.proc = subprocess.Popen(
            self.box.python_module("lnkit.grading.server", str(to_child_r), str(from_child_w)),
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=self._dir, env=env, start_new_session=True, preexec_fn=restrict,
            **self.box.popen_kwargs())
        os.close(to_child_r)
        os.close(from_child_w)
        self._w, self._r = to_child_w, from_child_r

    def _kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            for fd in (self._w, self._r):
                os.close(fd)
            self.proc = None
        sandbox.remove_tree(self._dir)
        self._dir = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                wire.write_frame(self._w, {"op": "bye"})
            except OSError:
                pass
        self._kill()

    def _exchange(self, header: dict, blobs: list, seconds: float, starting: bool) -> tuple[dict, list]:
        try:
            wire.write_frame(self._w, header, blobs)
        except OSError:
            pass  # it died; reading says how
        deadline = time.monotonic() + seconds
        ready, _, _ = select.select([self._r], [], [], seconds)
        if not ready:
            self._kill()
            raise CallTimeout(seconds, starting)
        try:
            # the header arrived in time; the rest of a large frame gets what is left of the time limit
            return self._read(deadline, seconds, starting)
        except wire.WireError as e:
            code = self.proc.wait(timeout=5) if self.proc is not None else None
            self._kill()
            if code is not None and code < 0:
                if -code == signal.SIGKILL:
                    detail = "it was killed (SIGKILL), most often by the system's out-of-memory killer"
                else:
                    detail = f"it crashed with {_signal_name(code)}"
                raise ProcessDied(detail, starting) from None
            if code is not None:
                raise ProcessDied(f"it exited with status {code}: os._exit() or an equivalent", starting) from None
            raise ProcessDied(f"it sent a malformed reply: {e}", starting) from None

    def _read(self, deadline: float, seconds: float, starting: bool) -> tuple[dict, list]:
        remaining = max(deadline - time.monotonic(), 0.01)
        ready, _, _ = select.select([self._r], [], [], remaining)
        if not ready:
            self._kill()
            raise CallTimeout(seconds, starting)
        return wire.read_frame(self._r)

    def ensure_started(self) -> None:
        if self.start_problem is not None:
            raise self.start_problem
        if self.proc is not None and self.proc.poll() is None:
            return
        self._spawn()
        try:
            reply, _ = self._exchange({"op": "load", "cells": self.cells}, [], self.limits.start_seconds, True)
        except RemoteProblem as problem:
            self.start_problem = problem  # the same code would fail the same way: do not retry it for every check
            self._note({"event": problem.kind, "when": "start", "detail": str(problem)})
            raise
        self.callables = reply.get("callables", [])
        self.load_errors = reply.get("errors", [])

    def _note(self, event: dict) -> None:
        """Remember an event once per kind and function (a check may meet the same problem on every case)."""
        key = (event.get("event"), event.get("function"))
        if all((e.get("event"), e.get("function")) != key for e in self.events):
            self.events.append(event)

    # --- calls -----------------------------------------------------------------------------------------------------

    def call(self, name: str, args: tuple, kwargs: dict, lnkit_files=(), spy: str = "", stand_in=()):
        """Call the student's function: ``(result, args_after, info)``, or raise a RemoteProblem."""
        self.ensure_started()
        blobs: list = []
        header = {"op": "call", "name": name, "lnkit_files": list(lnkit_files), "spy": spy,
                  "stand_in": list(stand_in),
                  "args": wire.encode_value(tuple(args), blobs, special=_special),
                  "kwargs": wire.encode_value(dict(kwargs), blobs, special=_special)}
        try:
            reply, rblobs = self._exchange(header, blobs, self.limits.call_seconds, False)
        except RemoteProblem as problem:
            self._note({"event": problem.kind, "function": name, "detail": str(problem)})
            raise
        status = reply.get("status")
        if status == "reference":
            self._note({"event": "reference", "function": name, "detail": reply.get("called", "")})
            raise ReferenceCalled(reply.get("called", "a reference implementation"))
        if status == "memory":
            self._note({"event": "memory", "function": name, "detail": reply.get("message", "")})
            raise MemoryLimit(self.limits.memory_bytes, reply.get("message", ""))
        if status == "missing":
            raise NotDefined(reply.get("message", f"{name} is not defined"))
        after = [None if t is None else wire.decode_value(t, rblobs) for t in reply.get("args_after", [])]
        info = {"stand_in_used": reply.get("stand_in_used", [])}
        if status == "raised":
            if reply.get("type") in ("SystemExit", "KeyboardInterrupt", "RecursionError"):
                self._note({"event": reply["type"], "function": name, "detail": reply.get("message", "")})
            raise StudentRaised(reply.get("type", "Exception"), reply.get("message", ""))
        if status != "ok":
            raise ProcessDied(f"it sent an unexpected reply {status!r}")
        result = wire.decode_value(reply["result"], rblobs)
        opaque = _find_opaque(result)
        if opaque is not None:
            self._note({"event": "refused", "function": name, "detail": repr(opaque)})
            raise RefusedResult(opaque.type_name, opaque.why)
        return result, after, info


def _find_opaque(v):
    if isinstance(v, wire.Opaque):
        return v
    if isinstance(v, (tuple, list)):
        for x in v:
            if (found := _find_opaque(x)) is not None:
                return found
    if isinstance(v, dict):
        for x in v.values():
            if (found := _find_opaque(x)) is not None:
                return found
    return None


@dataclass
class RemoteFunction:
    """Stands for the student's function ``name`` in the checker: calling it goes to the student server."""

    server: StudentServer
    name: str
    __lnkit_remote__: bool = field(default=True, init=False)

    @property
    def __name__(self) -> str:  # checks print the function's name
        return self.name

    def remote_call(self, args, kwargs, lnkit_files=(), spy="", stand_in=()):
        return self.server.call(self.name, args, kwargs, lnkit_files, spy, stand_in)

    def __call__(self, *args, **kwargs):
        result, _, _ = self.remote_call(args, kwargs)
        return result

