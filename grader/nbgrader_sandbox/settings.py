"""The grader's settings, read from the course's ``nbgrader_config.py`` as nbgrader reads them: ``c.GradingSandbox``.

Every limit is in CPU seconds where it is a time (a busy machine never changes a verdict); wall-clock seconds appear
only as backstops, and say so.
"""

from __future__ import annotations

import os

from traitlets import Bool, Dict, Float, Integer, List, TraitError, Unicode, validate
from traitlets.config import Configurable

from .course import Course
from .course import load as load_course
from .limits import (
    CALL_SECONDS,
    CHECKER_WALL_SECONDS,
    CPU_SECONDS,
    KERNEL_PROCESSES,
    MEMORY_BYTES,
    NOTEBOOK_CPU_SECONDS,
    NOTEBOOK_WALL_SECONDS,
    SERVER_PROCESSES,
    START_SECONDS,
    UID_BASE,
)


class GradingSandbox(Configurable):
    """What untrusted code may use when it is graded: the same for the kernel and for the student server."""

    course = Unicode("", help="the module that describes the course to the grader (see nbgrader_sandbox.course): its "
                              "checks, the helpers they send, its references, its hidden-case hook; empty for a "
                              "course whose test cells need none of them").tag(config=True)
    packages = Dict({}, help="per assignment, the packages graded code may import (others get default_packages); "
                             "the course's REFERENCES are never granted").tag(config=True)
    default_packages = List(["numpy"], help="the packages graded code may import").tag(config=True)
    kernel_packages = List(["ipykernel"], help="added in the kernel only (with the course's KERNEL_PACKAGES): it runs "
                                               "the notebook as the student sees it, and decides no score"
                           ).tag(config=True)
    memory_bytes = Integer(MEMORY_BYTES, help="memory of each student's sandbox, all its processes together (and the "
                                              "address space of each one), bytes").tag(config=True)
    processes = Integer(KERNEL_PROCESSES, help="processes and threads of each student's kernel sandbox, all together "
                                               f"(bubblewrap's two included); the student server's is "
                                               f"{SERVER_PROCESSES}").tag(config=True)
    cpu_seconds = Integer(CPU_SECONDS, help="CPU-seconds limit of each sandboxed process (a backstop)").tag(config=True)
    call_seconds = Float(CALL_SECONDS, help="CPU seconds one call of a student function may take, out of the "
                                            "kernel (the verdicts that count)").tag(config=True)
    start_seconds = Float(START_SECONDS, help="CPU seconds the notebook's code may take before the first call, out "
                                              "of the kernel").tag(config=True)
    checker_wall_seconds = Float(CHECKER_WALL_SECONDS, help="wall-clock backstop on the checker of one notebook, "
                                                            "seconds").tag(config=True)
    notebook_cpu_seconds = Float(NOTEBOOK_CPU_SECONDS, help="CPU seconds the kernel's sandbox may use for the whole "
                                                            "in-kernel run (it only makes the feedback)"
                                 ).tag(config=True)
    notebook_wall_seconds = Float(NOTEBOOK_WALL_SECONDS, help="wall-clock seconds the whole in-kernel run may take, "
                                                              "however it spends them (a backstop)").tag(config=True)
    uid_base = Integer(UID_BASE, help="as root, each student's sandbox runs as a uid of its own, from uid_base to "
                                      "uid_base + 999999 (no account needed)").tag(config=True)
    allow_unsandboxed = Bool(False, help="grade WITHOUT a sandbox where bubblewrap is unavailable: only for a "
                                         "setting where every student is trusted").tag(config=True)

    def course_spec(self) -> Course:
        """The course module's description, loaded and checked once (see nbgrader_sandbox.course)."""
        return load_course(self.course)

    @validate("call_seconds", "start_seconds", "checker_wall_seconds", "notebook_cpu_seconds", "notebook_wall_seconds")
    def _positive(self, proposal):
        if not proposal["value"] > 0:
            raise TraitError(f"c.GradingSandbox.{proposal['trait'].name} must be a positive number of seconds; got "
                             f"{proposal['value']!r}")
        return proposal["value"]

    def packages_for(self, assignment: str) -> tuple[str, ...]:
        return tuple(self.packages.get(assignment, self.default_packages))

    def refusal(self) -> str:
        """Why student code must not run here ("" when a sandbox can be made, or the instructor opted out)."""
        from . import sandbox

        reason = sandbox.unavailable()
        if not reason or self.allow_unsandboxed:
            return ""
        return (f"nbgrader_sandbox refuses to run student code: no sandbox can be made here. {reason}. To grade anyway "
                f"where every student is trusted, set c.GradingSandbox.allow_unsandboxed = True in nbgrader_config.py.")


def for_course(course_root: str) -> GradingSandbox:
    """The course's GradingSandbox settings, read from its nbgrader_config.py as nbgrader reads them."""
    from traitlets.config.loader import PyFileConfigLoader

    path = os.path.join(course_root, "nbgrader_config.py")
    if not os.path.exists(path):
        raise ValueError(f"course: {course_root} has no nbgrader_config.py; run this from the course directory")
    return GradingSandbox(config=PyFileConfigLoader("nbgrader_config.py", path=course_root).load_config())
