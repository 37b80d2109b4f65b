"""What a course's checks receive and catch when grading runs them out of the student's kernel: the public protocol.

A test cell's ``check_layer_norm(layer_norm)`` runs in the checker, where ``layer_norm`` is a :class:`StudentFunction`:
calling it runs the student's function in their sandbox. A check that wants more than the result (the arguments as
they are after the call, a stand-in for one of the notebook's names during the call) calls
:meth:`StudentFunction.remote_call` instead, and catches :class:`StudentCodeProblem`, whose subclasses say what went
wrong and whose ``describe(fname)`` says it to the student.

A course's checks recognise the proxy without importing the grader (students have no grader)::

    proxy = sys.modules.get("nbgrader_sandbox.proxy")   # loaded only where grading runs
    if proxy is not None and isinstance(f, proxy.StudentFunction): ...

This module imports nothing but the standard library.
"""

from __future__ import annotations

import builtins
import functools
from dataclasses import dataclass


class StudentCodeProblem(Exception):
    """A call that did not return plain values. ``kind`` says why; ``describe()`` says it to the student."""

    kind = "problem"

    def describe(self, fname: str) -> str:
        return f"{fname}: {self}"


class StudentRaised(StudentCodeProblem):
    kind = "raised"

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message = type_name, message

    @classmethod
    def of(cls, type_name: str, message: str) -> StudentRaised:
        """The student's exception as the checker raises it: when it is a built-in exception (``ValueError``), also
        an instance of that type, so that a test cell's ``except ValueError`` catches it as it would in the kernel."""
        return _raised_type(type_name)(type_name, message)


@functools.cache
def _raised_type(type_name: str) -> type:
    builtin = getattr(builtins, type_name, None) if type_name.isidentifier() else None
    if not (isinstance(builtin, type) and issubclass(builtin, Exception)) or builtin is Exception:
        return StudentRaised
    try:
        return type(type_name, (StudentRaised, builtin), {"__module__": "builtins", "__str__": BaseException.__str__})
    except TypeError:  # a built-in whose layout cannot be combined (OSError's family): the plain kind
        return StudentRaised


class ReferenceCalled(StudentCodeProblem):
    kind = "reference"

    def __init__(self, called: str):
        super().__init__(called)
        self.called = called


class CallTimeout(StudentCodeProblem):
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


class MemoryLimit(StudentCodeProblem):
    kind = "memory"

    def __init__(self, limit: int, detail: str = ""):
        super().__init__(detail)
        self.limit = limit

    def describe(self, fname: str) -> str:
        how = ("its processes together passed it: the sandbox was stopped" if self.whole
               else "the call tried to allocate more (MemoryError)")
        return (f"{fname} ran out of memory: grading gives each student {self.limit / 1024**3:g} GiB (the memory "
                f"limit), and {how}.")

    @property
    def whole(self) -> bool:
        """Stopped by the sandbox's supervisor (all its processes together), not a MemoryError in one of them."""
        return str(self).startswith("its processes together")


class ProcessDied(StudentCodeProblem):
    kind = "died"

    def __init__(self, detail: str, starting: bool = False):
        super().__init__(detail)
        self.detail, self.starting = detail, starting

    def describe(self, fname: str) -> str:
        when = "while the notebook's code was running" if self.starting else f"during a call of {fname}"
        return (f"the process running your code stopped {when} ({self.detail}), so {fname} could not be tested. "
                f"Code must never end the process (os._exit, sys.exit in a loop, a crash).")


class RefusedResult(StudentCodeProblem):
    kind = "refused"

    def __init__(self, type_name: str, why: str):
        super().__init__(f"{type_name} ({why})")
        self.type_name, self.why = type_name, why

    def describe(self, fname: str) -> str:
        return (f"{fname} returned a {self.type_name} ({self.why}), not a plain NumPy array or Python number. "
                f"Return `np.ndarray` results (for example `np.asarray(result)`): an object that is not plain data "
                f"could make any comparison pass, so grading refuses it.")


class NotDefined(StudentCodeProblem, NameError):
    kind = "missing"

    def describe(self, fname: str) -> str:
        return (f"{fname} is not defined by your notebook's code (a NameError): run the cell that defines it, and "
                f"keep its name as given.")


@dataclass
class StudentFunction:
    """Stands for the student's function ``name`` in the checker: calling it goes to the student server."""

    server: StudentServer  # noqa: F821 - nbgrader_sandbox.remote.StudentServer
    name: str

    @property
    def __name__(self) -> str:  # checks print the function's name
        return self.name

    def remote_call(self, args, kwargs, stand_in: dict | None = None):
        return self.server.call(self.name, args, kwargs, stand_in)

    def __call__(self, *args, **kwargs):
        try:
            result, _ = self.remote_call(args, kwargs)
        except StudentCodeProblem as problem:
            problem.function = self.name  # for the test cell's message: which of the student's functions
            raise
        return result

