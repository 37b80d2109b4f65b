"""The checker's side of the student server: start it, bind each student function to a proxy, report what went wrong.

A :class:`~.proxy.StudentFunction` is what a test cell's ``check_layer_norm(layer_norm)`` receives when it runs out of
the student's kernel. The course's check recognizes it (see :mod:`.proxy`) and calls its ``remote_call``, which comes
here and returns plain values rebuilt from bytes, or raises a :class:`~.proxy.StudentCodeProblem` that the check turns
into a student-facing message: the student's own exception, a reference called, a time limit, the memory limit, a
process that died, a result that is not plain data.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from . import sandbox, wire
from .course import Course
from .limits import CALL_SECONDS, CPU_SECONDS, MEMORY_BYTES, START_SECONDS, UID_BASE
from .proxy import (
    CallTimeout,
    MemoryLimit,
    NotDefined,
    ProcessDied,
    ReferenceCalled,
    RefusedResult,
    StudentCodeProblem,
    StudentRaised,
)


@dataclass
class Limits:
    """What one student's server may use, and where it runs. Time limits are CPU seconds: a busy machine slows a call
    down without changing its verdict; wall-clock time is only a backstop (``wall_factor`` times the CPU limit)."""

    call_seconds: float = CALL_SECONDS  # CPU seconds per call of a student function
    start_seconds: float = START_SECONDS  # CPU seconds to run the notebook's code before the first call
    memory_bytes: int = MEMORY_BYTES  # all the sandbox's processes together
    cpu_seconds: int = CPU_SECONDS  # per process (RLIMIT_CPU), a backstop behind the per-call limit
    wall_factor: float = 10.0
    packages: tuple = ("numpy",)  # what the student's code may import here (the assignment's declaration)
    key: str = "student"  # whose sandbox (sandbox.submission_key of the submission): picks its uid as root
    files: tuple = ()  # (host path, relative path) of the submission's files, bound read-only
    # sandbox.package_binds(server_packages(packages)) where a long-lived caller computed it once (the checker is a
    # process per notebook, and finding the packages' files is most of its start); () finds them here
    binds: tuple = ()
    uid_base: int = UID_BASE
    allow_unsandboxed: bool = False  # only for a trusted setting: run student code without a sandbox
    cell_seconds: float | None = None  # c.Execute.timeout: CPU seconds of the student code one test cell runs

    def __post_init__(self):
        if self.cell_seconds is not None and not self.cell_seconds > 0:
            raise ValueError(f"Limits.cell_seconds must be a positive number or None; got {self.cell_seconds!r}")
        for name in ("call_seconds", "start_seconds", "wall_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be a positive number; got {getattr(self, name)!r}")
        if not isinstance(self.memory_bytes, int) or self.memory_bytes < 256 * 1024**2:
            raise ValueError(f"Limits.memory_bytes must be an int of at least 256 MiB; got {self.memory_bytes!r}")
        self.packages = tuple(self.packages)
        self.files = tuple(tuple(f) for f in self.files)
        self.binds = tuple(tuple(b) for b in self.binds)


def server_packages(packages: tuple) -> tuple:
    """What the student server is given: the assignment's packages, and NumPy always (its wire format, wire.py,
    carries arrays as np.save bytes)."""
    return tuple(dict.fromkeys(("numpy", *packages)))


class SandboxRefused(RuntimeError):
    """No sandbox can be made here and the instructor did not opt out: student code is not run at all."""


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


_HERE = os.path.dirname(os.path.abspath(__file__))
# The server's two files, bound read-only into the sandbox beside each other; nothing of the course goes in.
_SERVER_FILES = ((os.path.join(_HERE, "server.py"), "/sandbox/grading/server.py"),
                 (os.path.join(_HERE, "wire.py"), "/sandbox/grading/wire.py"))
_BOOT = "sys.path.insert(0, '/sandbox/grading'); import server; server.main(sys.argv[1:])"


class StudentServer:
    """One student's code, running in a sandbox of its own; restarted after a call that killed or stopped it.

    Calls that need a stand-in (chapter 5's rms_norm in place of the student's) go to a second server that runs
    nothing else, so the stand-in never exists where the student's own functions are graded.

    Time is measured here, never taken from a reply: :attr:`cpu_used` adds up the CPU seconds the kernel counts for
    the sandbox's processes (:func:`.sandbox.cpu_seconds`, read from outside it) while the student's calls run and
    between them; the notebook's own run at start-up is limited by ``start_seconds`` instead.
    """

    def __init__(self, cells: list[str], limits: Limits | None = None, stand_ins: tuple = (),
                 course: Course | None = None):
        if not isinstance(cells, list) or not all(isinstance(c, str) for c in cells):
            raise TypeError("cells must be a list of source strings (the notebook's code cells)")
        self.cells = cells
        self.limits = limits or Limits()
        self.course = course or Course()
        granted = set(self.limits.packages) & set(self.course.references)
        if granted:
            raise ValueError(f"packages: {sorted(granted)[0]} cannot be granted to graded code (the course "
                             f"{self.course.module} keeps its checks and references there); grant the packages the "
                             f"exercise needs, such as numpy")
        self.stand_ins = tuple(stand_ins)
        self.proc: subprocess.Popen | None = None
        self.start_problem: StudentCodeProblem | None = None
        self.want: list[str] = []  # names the test cells read: the server says what each is (see globals_info)
        self.names: dict = {}  # name -> {"kind": "callable" | "module" | "data" | "other", ...}, values decoded
        self.load_errors: list[dict] = []
        self.events: list[dict] = []  # what happened, for the integrity report
        self.cpu_used = 0.0  # CPU seconds of the student's processes during and between calls (not at start-up)
        # the calls' wall-clock seconds less the time their processes waited for a CPU: what computing, sleeping or
        # blocking took, whatever else the machine was doing (nbgrader's timeout counts a sleep; so does this)
        self.active_used = 0.0
        self._cpu_seen = 0.0  # the process tree's count at the last look (see _look_at_cpu)
        self.support_sent: set = set()
        self._stand_in_server: StudentServer | None = None
        reason = sandbox.unavailable()
        if reason and not self.limits.allow_unsandboxed:
            raise SandboxRefused(f"student code was not run: no sandbox can be made here ({reason}). To grade "
                                 f"anyway in a setting where every student is trusted, set "
                                 f"c.GradingSandbox.allow_unsandboxed = True.")
        self.box = None if reason else sandbox.Sandbox(
            # NumPy always: the server's wire format (wire.py) carries arrays as np.save bytes
            key=self.limits.key, packages=server_packages(self.limits.packages), binds=self.limits.binds or None,
            limits=sandbox.Limits(memory_bytes=self.limits.memory_bytes, cpu_seconds=int(self.limits.cpu_seconds)),
            files=self.limits.files, read_only=_SERVER_FILES, uid_base=self.limits.uid_base)
        self.isolation = self.box.identity() if self.box else f"NO SANDBOX ({reason})"

    # --- process ---------------------------------------------------------------------------------------------------

    def _spawn(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        fds = [str(to_child_r), str(from_child_w)]
        if self.box is not None:
            argv, cwd, env = self.box.python_argv(_BOOT, *fds), "/", {}
        else:  # the instructor's explicit opt-out: no isolation at all
            cwd = sandbox.private_dir("sandbox-student-")
            argv = [os.path.realpath(sys.executable), "-I", "-c",
                    f"import sys; sys.path.insert(0, {_HERE!r}); import server; server.main(sys.argv[1:])", *fds]
            env = {"PATH": "/usr/bin:/bin", "HOME": cwd, "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen(argv, pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd, env=env,
                                     start_new_session=True)
        self._cwd = None if self.box is not None else cwd
        os.close(to_child_r)
        os.close(from_child_w)
        self._w, self._r = to_child_w, from_child_r
        self.support_sent: set = set()
        self._cpu_seen = 0.0

    def _kill(self) -> None:
        if self.proc is not None:
            sandbox.kill_tree(self.proc.pid)
            self.proc.wait()
            for fd in (self._w, self._r):
                os.close(fd)
            self.proc = None
            sandbox.remove_tree(self._cwd)

    def close(self) -> None:
        if self._stand_in_server is not None:
            self._stand_in_server.close()
        if self.proc is not None and self.proc.poll() is None:
            try:
                wire.write_frame(self._w, {"op": "bye"})
            except OSError:
                pass
        self._kill()

    def _look_at_cpu(self, charge: bool) -> float:
        """The CPU seconds the sandbox's processes used since the last look, as the kernel counts them, read from
        outside the sandbox: nothing the student's code does or says changes the count. Added to cpu_used when
        ``charge``. Only growth is counted, so a child whose time no parent collects (SIGCHLD ignored) keeps what it
        was last seen using after it is gone."""
        now = sandbox.cpu_seconds(self.proc.pid)
        grew = max(0.0, now - self._cpu_seen)
        self._cpu_seen = now
        if charge:
            self.cpu_used += grew
        return grew

    def _look_at_active(self, started: float, waited: float, charge: bool) -> None:
        """Add to active_used the wall-clock seconds since ``started`` less the growth of the sandbox's run delay
        since ``waited`` (both read from outside the sandbox)."""
        if not charge:
            return
        elapsed = time.monotonic() - started
        delay = 0.0
        if self.proc is not None:
            delay = max(0.0, sandbox.run_delay_seconds(self.proc.pid) - waited)
        self.active_used += max(0.0, elapsed - delay)

    def _wait_reply(self, cpu_limit: float, starting: bool) -> None:
        """Wait until a reply starts to arrive, while the CPU time the sandbox's processes used since the previous
        exchange stays under cpu_limit (and the wall-clock backstop is not reached). A server that uses up its CPU time
        is killed: CallTimeout."""
        used = 0.0
        wall_end = time.monotonic() + cpu_limit * self.limits.wall_factor + 5
        while True:
            ready, _, _ = select.select([self._r], [], [], 0.05)
            if ready:
                return
            used += self._look_at_cpu(charge=not starting)
            if used > cpu_limit or time.monotonic() > wall_end:
                self._kill()
                raise CallTimeout(cpu_limit, starting)

    def _exchange(self, header: dict, blobs: list, seconds: float, starting: bool) -> tuple[dict, list]:
        # each look counts what the student's processes used since the previous one, so what they used between two
        # exchanges (a thread left running) counts against the next call too
        started, waited = time.monotonic(), sandbox.run_delay_seconds(self.proc.pid)
        try:
            wire.write_frame(self._w, header, blobs)
        except OSError:
            pass  # it died; reading says how
        try:
            self._wait_reply(seconds, starting)
        finally:
            self._look_at_active(started, waited, charge=not starting)
        try:
            reply = wire.read_frame(self._r)
            self._look_at_cpu(charge=not starting)
            return reply
        except wire.WireError as e:
            self._look_at_cpu(charge=not starting)
            code = self._exit_code()
            # the supervisor outside the sandbox stopped it for a limit of the student's processes together
            stopped = self.box.stopped_for(self.proc.returncode) if self.box is not None else ""
            self._kill()
            if stopped.startswith("its processes together passed the memory limit"):
                raise MemoryLimit(self.limits.memory_bytes, stopped) from None
            if stopped:
                raise ProcessDied(f"the grader stopped it: {stopped}", starting) from None
            if code is not None and code < 0:
                if -code == signal.SIGKILL:
                    detail = "it was killed (SIGKILL), most often by the system's out-of-memory killer"
                else:
                    detail = f"it crashed with {_signal_name(code)}"
                raise ProcessDied(detail, starting) from None
            if code is not None:
                raise ProcessDied(f"it exited with status {code}: os._exit() or an equivalent", starting) from None
            raise ProcessDied(f"it sent a malformed reply: {e}", starting) from None

    def _exit_code(self) -> int | None:
        """How the student's process ended. Inside the sandbox it is bwrap's child: bwrap exits with its status,
        or with 128 + the signal that killed it."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None
        if self.box is not None and code > 128:
            return -(code - 128)
        return code

    def ensure_started(self) -> None:
        if self.start_problem is not None:
            raise self.start_problem
        if self.proc is not None and self.proc.poll() is None:
            return
        self._spawn()
        request = {"op": "load", "cells": self.cells,
                   "refuse": list(self.course.refused(self.limits.packages)),
                   "support": [self.course.stand_in_source(n) for n in self.stand_ins],
                   "stand_ins": list(self.stand_ins),
                   "want": list(self.want)}
        try:
            reply, blobs = self._exchange(request, [], self.limits.start_seconds, True)
        except StudentCodeProblem as problem:
            self.start_problem = problem  # the same code would fail the same way: do not retry it for every check
            self._note({"event": problem.kind, "when": "start", "detail": str(problem)})
            raise
        errors = reply.get("errors")
        self.load_errors = [{"cell": e.get("cell") if type(e.get("cell")) is int else None,
                             "type": _said(e, "type", wire.NAME_CHARS, "Exception"),
                             "message": _said(e, "message", wire.MESSAGE_CHARS)}
                            for e in (errors[:100] if isinstance(errors, list) else []) if isinstance(e, dict)]
        self.names = {}
        for name, info in (reply.get("names") or {}).items():
            if not isinstance(info, dict) or name not in self.want:
                continue
            if info.get("kind") == "data":
                try:  # plain data only: wire rebuilds numbers, strings, containers and numeric arrays, never a pickle
                    value = wire.decode_value(info.get("value"), blobs)
                    info = ({"kind": "other", "type": value.type_name} if isinstance(value, wire.Opaque)
                            else {"kind": "data", "value": value})
                except (wire.WireError, ValueError, TypeError, IndexError, KeyError) as e:
                    info = {"kind": "other", "type": f"value that could not be read ({wire.cut(e, wire.NAME_CHARS)})"}
            elif info.get("kind") == "other":  # named by the server: a type's name, the student's choice
                info = {"kind": "other", "type": _said(info, "type", wire.NAME_CHARS * 2, "value")}
            self.names[name] = info

    def rebind(self, name: str, *, delete: bool = False, source: str | None = None, value=None) -> None:
        """Delete or assign one of the notebook's names in the student's process, as a test cell did here: the new
        value is another of its objects (``source``, by name) or plain data. Nothing is sent when the server is not
        running (it would start from the notebook's code anyway), nor when the value is not plain data."""
        if self.proc is None or self.proc.poll() is not None:
            return
        header: dict = {"op": "rebind", "name": name, "delete": delete}
        blobs: list = []
        if source is not None:
            header["from"] = source
        elif not delete:
            header["value"] = wire.encode_value(value, blobs)
            if _find_opaque(wire.decode_value(header["value"], blobs)) is not None:
                return
        try:
            self._exchange(header, blobs, self.limits.call_seconds, False)
        except StudentCodeProblem as problem:
            self._note({"event": problem.kind, "function": name, "detail": str(problem)})

    def _note(self, event: dict) -> None:
        """Remember an event once per kind and function (a check may meet the same problem on every case)."""
        event = {key: wire.cut(value, wire.MESSAGE_CHARS) if isinstance(value, str) else value
                 for key, value in event.items()}  # a detail may quote the student's text
        key = (event.get("event"), event.get("function"))
        if all((e.get("event"), e.get("function")) != key for e in self.events):
            self.events.append(event)

    def _with_stand_ins(self, stand_in: tuple) -> StudentServer:
        if self._stand_in_server is None:
            self._stand_in_server = StudentServer(self.cells, self.limits, stand_ins=tuple(stand_in),
                                                  course=self.course)
            self._stand_in_server.events = self.events  # one record of what happened
        return self._stand_in_server

    # --- calls -----------------------------------------------------------------------------------------------------

    def call(self, name: str, args: tuple, kwargs: dict, stand_in: dict | None = None):
        """Call the student's function: ``(result, args_after)``, or raise a StudentCodeProblem.

        ``stand_in`` maps a name of the notebook to the parameters of the stand-in that replaces it during the call
        (``{"rms_norm": (factor,)}``: the course's STAND_INS make it, see :mod:`.course`)."""
        stand_in = _checked_stand_in(stand_in, self.course)
        if stand_in and not self.stand_ins:
            other = self._with_stand_ins(tuple(stand_in))
            before, active_before = other.cpu_used, other.active_used
            try:
                return other.call(name, args, kwargs, stand_in)
            finally:
                self.cpu_used += other.cpu_used - before
                self.active_used += other.active_used - active_before
        self.ensure_started()
        blobs: list = []
        carried: list = []

        def special(v):  # an object of a class the course carries goes as its plain state (course.CARRIED)
            found = self.course.carry(v)
            if found is not None:
                carried.append(found[0])
            return found

        header = {"op": "call", "name": name, "stand_in": stand_in,
                  "args": wire.encode_value(tuple(args), blobs, special=special),
                  "kwargs": wire.encode_value(dict(kwargs), blobs, special=special)}
        sources = [src for src in self.course.carried_sources(carried) if src not in self.support_sent]
        if sources:  # each carried class's source, once per process: the server defines the classes from it
            header["support"] = sources
            self.support_sent.update(sources)
        try:
            reply, rblobs = self._exchange(header, blobs, self.limits.call_seconds, False)
        except StudentCodeProblem as problem:
            self._note({"event": problem.kind, "function": name, "detail": str(problem)})
            raise
        status = reply.get("status")
        if status == "reference":
            called = _said(reply, "called", wire.NAME_CHARS, "a reference implementation")
            self._note({"event": "reference", "function": name, "detail": called})
            raise ReferenceCalled(called)
        if status == "memory":
            self._note({"event": "memory", "function": name, "detail": _said(reply, "message", wire.MESSAGE_CHARS)})
            raise MemoryLimit(self.limits.memory_bytes, _said(reply, "message", wire.MESSAGE_CHARS))
        if status == "missing":
            raise NotDefined(f"{name} is not defined")
        after = [None if t is None else wire.decode_value(t, rblobs) for t in reply.get("args_after", [])]
        if status == "raised":
            type_name = _said(reply, "type", wire.NAME_CHARS, "Exception")
            message = _said(reply, "message", wire.MESSAGE_CHARS)
            if type_name in ("SystemExit", "KeyboardInterrupt", "RecursionError"):
                self._note({"event": type_name, "function": name, "detail": message})
            raise StudentRaised.of(type_name, message)
        if status != "ok":
            raise ProcessDied(f"it sent an unexpected reply {status!r}")
        result = wire.decode_value(reply["result"], rblobs)
        opaque = _find_opaque(result)
        if opaque is not None:
            self._note({"event": "refused", "function": name, "detail": repr(opaque)})
            raise RefusedResult(opaque.type_name, opaque.why)
        return result, after


def _checked_stand_in(stand_in, course: Course) -> dict:
    """``{name: [numbers]}``, checked: the names the checker has a stand-in for, each with its plain parameters."""
    if not stand_in:
        return {}
    if not isinstance(stand_in, dict):
        raise TypeError(f"stand_in: expected a dict of name -> parameters, such as {{'rms_norm': (2.0,)}}; "
                        f"got {type(stand_in).__name__}")
    out = {}
    for name, params in stand_in.items():
        course.stand_in_source(name)  # a name the course does not define is refused there
        if not isinstance(params, (tuple, list)) or not all(type(p) in (int, float) for p in params):
            raise TypeError(f"stand_in[{name!r}]: expected a tuple of numbers (the stand-in's parameters); "
                            f"got {params!r:.80}")
        out[name] = list(params)
    return out


def _said(reply: dict, key: str, limit: int, default: str = "") -> str:
    """A text field of the student server's reply, as a str cut to ``limit``: the server is the student's process,
    so a field may hold anything, of any length (the checker's cut is the one that counts)."""
    value = reply.get(key, default)
    return wire.cut(value if isinstance(value, str) else default, limit)


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


