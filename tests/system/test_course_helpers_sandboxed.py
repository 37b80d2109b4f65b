"""Each helper the course registers (nbgrader_sandbox.course) reaches the student's side through a real sandbox, and a
stand-in the course does not define is an error during a call, never a silent no-op."""

from __future__ import annotations

import pytest
from corpus import CORRECT, LNKIT_COURSE

from lnkit import checks
from nbgrader_sandbox import course as courses
from nbgrader_sandbox.proxy import StudentFunction
from nbgrader_sandbox.remote import Limits, StudentServer

LNKIT = courses.load(LNKIT_COURSE)


@pytest.mark.parametrize("check", sorted(c for c, uses in LNKIT.checks.items() if any(uses.values())))
def test_each_registered_helper_reaches_the_student_side_through_the_real_sandbox(check):
    """The checks that send a stand-in or carried objects pass a right answer graded in the sandbox; the helper's
    source really travelled (the server that ran the calls received it)."""
    function = check.removeprefix("check_")
    server = StudentServer(["import numpy as np", CORRECT[function]], Limits(call_seconds=5, start_seconds=20),
                           course=LNKIT)
    try:
        getattr(checks, check)(StudentFunction(server, function))
        getattr(checks, check)(StudentFunction(server, function), hidden=True)
        uses = LNKIT.checks[check]
        for name in uses["stand_ins"]:
            assert server._stand_in_server is not None and name in server._stand_in_server.stand_ins
        for name in uses["carried"]:
            assert LNKIT.carried[name].source in server.support_sent
    finally:
        server.close()


def test_a_stand_in_the_course_does_not_define_is_an_error_not_a_silent_no_op():
    server = StudentServer(["def f(x):\n    return x"], Limits(call_seconds=5, start_seconds=20), course=LNKIT)
    try:
        with pytest.raises(courses.CourseError, match=r"no stand-in 'layer_norm'.*\['rms_norm'\]"):
            server.call("f", (1.0,), {}, stand_in={"layer_norm": (2.0,)})
    finally:
        server.close()
