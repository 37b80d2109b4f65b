"""The one seam between the grader and a course: what a course tells the grader, checked when it is loaded.

A course is a module named in ``nbgrader_config.py``::

    c.GradingSandbox.course = "lnkit.checks.course"

The module sets any of these names (all optional; a course whose test cells are plain asserts needs none of them):

``CHECK_MODULES``
    the modules test cells import their check functions from (``("lnkit.checks",)``);
``CHECKS``
    every check function a test cell may import from them, each with the helpers it needs on the student's side:
    ``{"check_layer_norm_via_rms": {"stand_ins": ("rms_norm",)}, "check_pre_ln": {"carried": ("Linear",)}}``;
``STAND_INS``
    ``{name: source}``: source text defining ``make_<name>(*params)``, which makes the function that replaces the
    notebook's ``name`` during one call of a student function (a check passes ``stand_in={name: params}``);
``CARRIED``
    ``{class name: (type, source)}``: objects of ``type`` that checks pass to student functions travel as their plain
    ``.state()`` and are rebuilt on the student's side by ``<class name>.from_state(state)`` of ``source``;
``REFERENCES``
    top-level packages that hold the course's answers (its checks and reference code): never granted to graded code;
    importing one there gives a stand-in whose every use is reported as "called a reference";
``REFUSED_UNLESS_GRANTED``
    packages treated the same way unless the assignment grants them (``("torch",)``: it has its own LayerNorm);
``KERNEL_PACKAGES``
    packages added to the in-kernel run (only for the feedback: it runs the notebook's visible checks);
``set_hidden_key(key: bytes | None)``
    called in the checker before the test cells run, with this submission's key (or None): draw hidden cases from it;
``similarity_references(course_root) -> {label: source}``
    code that submissions are compared with besides each other (the course's own references, its book).

Every name a check can send across (a stand-in, a carried class) is checked here, when the course is loaded (at
``nbgrader generate_assignment`` and before any grading), never found missing during a student's call.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


class CourseError(ValueError):
    """The course module describes something the grader cannot do; the message names the entry and what it expects."""


@dataclass(frozen=True)
class Carried:
    """A class whose objects checks pass to student functions, rebuilt from plain state on the student's side."""

    type: type
    source: str


@dataclass(frozen=True)
class Course:
    module: str = ""
    check_modules: tuple[str, ...] = ()
    checks: Mapping[str, Mapping[str, tuple]] = field(default_factory=dict)
    stand_ins: Mapping[str, str] = field(default_factory=dict)
    carried: Mapping[str, Carried] = field(default_factory=dict)
    references: tuple[str, ...] = ()
    refused_unless_granted: tuple[str, ...] = ()
    kernel_packages: tuple[str, ...] = ()
    set_hidden_key: Callable[[bytes | None], None] = lambda key: None
    similarity_references: Callable[[str], Mapping[str, str]] = lambda course_root: {}

    def refused(self, granted: tuple[str, ...]) -> tuple[str, ...]:
        """The top-level packages that give a refusing stand-in in an assignment that grants ``granted``."""
        return tuple(dict.fromkeys([*self.references, *(p for p in self.refused_unless_granted if p not in granted)]))

    def stand_in_source(self, name: str) -> str:
        try:
            return self.stand_ins[name]
        except KeyError:
            raise CourseError(f"stand_in: the course {self.module or '(none)'} has no stand-in {name!r}; it has "
                              f"{sorted(self.stand_ins) or 'none'} (STAND_INS)") from None

    def carry(self, value) -> tuple[str, dict] | None:
        """``(class name, state)`` when value is an object of a carried class, else None."""
        for name, carried in self.carried.items():
            if type(value) is carried.type:
                return name, value.state()
        return None

    def carried_sources(self, names) -> list[str]:
        return list(dict.fromkeys(self.carried[n].source for n in names))

    def check_uses(self, check: str) -> str:
        """Why a test cell may not import ``check`` ("" when it may)."""
        if check in self.checks:
            return ""
        return (f"{check} is not a check of the course {self.module} (CHECKS names {len(self.checks)}: "
                f"{', '.join(sorted(self.checks)[:8])}{', ...' if len(self.checks) > 8 else ''})")


def _tuple(module: str, name: str, value) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise CourseError(f"{module}.{name}: expected a tuple of names; got {value!r:.120}")
    return tuple(value)


def _defines(source: str, what: str, where: str) -> dict:
    namespace: dict = {}
    try:
        exec(compile(source, f"<{where}>", "exec"), namespace)  # noqa: S102 - the course's own text
    except Exception as e:  # noqa: BLE001 - any failure of the course's source is the course's error
        raise CourseError(f"{where}: its source does not run ({type(e).__name__}: {e})") from None
    if not callable(namespace.get(what)):
        raise CourseError(f"{where}: its source defines no {what}")
    return namespace


def from_module(module_name: str) -> Course:
    """The course that ``module_name`` describes, every entry checked (see the module docstring)."""
    if not module_name:
        return Course()
    try:
        m = importlib.import_module(module_name)
    except ImportError as e:
        raise CourseError(f"c.GradingSandbox.course = {module_name!r}: cannot import it ({e})") from None
    get = functools.partial(getattr, m)
    stand_ins = dict(get("STAND_INS", {}))
    for name, source in stand_ins.items():
        if not (isinstance(name, str) and name.isidentifier() and isinstance(source, str)):
            raise CourseError(f"{module_name}.STAND_INS: expected {{name: source}}; got {name!r:.60}")
        _defines(source, f"make_{name}", f"{module_name}.STAND_INS[{name!r}]")
    carried = {}
    for name, entry in dict(get("CARRIED", {})).items():
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], type)
                and isinstance(entry[1], str)):
            raise CourseError(f"{module_name}.CARRIED[{name!r}]: expected (type, source); got {entry!r:.120}")
        cls = _defines(entry[1], name, f"{module_name}.CARRIED[{name!r}]")[name]
        if not callable(getattr(cls, "from_state", None)) or not callable(getattr(entry[0], "state", None)):
            raise CourseError(f"{module_name}.CARRIED[{name!r}]: the type needs .state() and the source's {name} "
                              f"needs .from_state(state)")
        carried[name] = Carried(*entry)
    checks = {}
    for check, uses in dict(get("CHECKS", {})).items():
        uses = dict(uses or {})
        unknown = set(uses) - {"stand_ins", "carried"}
        if unknown:
            raise CourseError(f"{module_name}.CHECKS[{check!r}]: unknown entries {sorted(unknown)}; expected "
                              f"'stand_ins' and 'carried'")
        for kind, known in (("stand_ins", stand_ins), ("carried", carried)):
            names = _tuple(module_name, f"CHECKS[{check!r}][{kind!r}]", uses.get(kind, ()))
            missing = [n for n in names if n not in known]
            if missing:
                raise CourseError(f"{module_name}.CHECKS[{check!r}] uses the {kind.replace('_', '-')[:-1]} "
                                  f"{missing[0]!r}, which {module_name}.{kind.upper()} does not define")
            uses[kind] = names
        checks[check] = uses
    hook = get("set_hidden_key", None)
    refs = get("similarity_references", None)
    for name, f in (("set_hidden_key", hook), ("similarity_references", refs)):
        if f is not None and not callable(f):
            raise CourseError(f"{module_name}.{name}: expected a function; got {type(f).__name__}")
    return Course(
        module=module_name,
        check_modules=_tuple(module_name, "CHECK_MODULES", get("CHECK_MODULES", ())),
        checks=checks, stand_ins=stand_ins, carried=carried,
        references=_tuple(module_name, "REFERENCES", get("REFERENCES", ())),
        refused_unless_granted=_tuple(module_name, "REFUSED_UNLESS_GRANTED", get("REFUSED_UNLESS_GRANTED", ())),
        kernel_packages=_tuple(module_name, "KERNEL_PACKAGES", get("KERNEL_PACKAGES", ())),
        **({"set_hidden_key": hook} if hook else {}),
        **({"similarity_references": refs} if refs else {}),
    )


@functools.cache
def load(module_name: str) -> Course:
    return from_module(module_name)
