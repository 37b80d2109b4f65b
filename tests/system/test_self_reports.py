"""Nothing is decided from what the student's process reports about itself (issue 18, class 2).

The student server runs in the student's own process: their code can patch it, its clock, its profiler. So the
checker measures time from outside (the kernel's count of the sandbox's CPU seconds), and every rule about how an
answer was computed is decided on values: chapter 5's "calls rms_norm" by a stand-in that is deliberately not an
RMSNorm, chapter 8's one-pass rule is gone (np.var scores; only accuracy far from zero is graded).
"""

from __future__ import annotations

import numpy as np
import pytest
from corpus import ALSO_RIGHT, CORRECT, LNKIT_COURSE

from nbgrader_sandbox import wire
from nbgrader_sandbox.checker import run_job
from nbgrader_sandbox.course import load as load_course
from nbgrader_sandbox.proxy import StudentFunction
from nbgrader_sandbox.remote import Limits, StudentServer

LIMITS = {"call_seconds": 2, "start_seconds": 10}
LNKIT = load_course(LNKIT_COURSE)
TEST_LN = "from lnkit.checks import check_layer_norm\n\ncheck_layer_norm(layer_norm)\n"
TEST_VIA_RMS = "from lnkit.checks import check_layer_norm_via_rms\n\ncheck_layer_norm_via_rms(layer_norm_via_rms)\n"


def grade(cells: list[str], test: str, **limits) -> dict:
    out = run_job({"cells": ["import numpy as np", *cells], "tests": [{"grade_id": "t", "source": test}],
                   "course": LNKIT_COURSE, "limits": {**LIMITS, **limits}})
    return out["verdicts"][0]


# Patches the grading server it runs in (when it does) so that every reply says what the old checker believed: the
# call took no time, the stand-in was called; and stops its clock and its run-queue count.
FORGE_REPLIES = '''
import sys, time
_server = sys.modules.get("server")
if _server is not None:
    _real_call = _server.Server.call

    def _forged(self, request, blobs):
        reply, out = _real_call(self, request, blobs)
        reply["seconds"] = 0.0
        reply["stand_in_used"] = ["rms_norm"]
        return reply, out

    _server.Server.call = _forged
    _server.time = type("Clock", (), {"monotonic": staticmethod(lambda: 0.0)})
    _server._run_delay = lambda: 0.0
'''

# A correct layer_norm that computes for 0.5 CPU seconds on each of its first `calls` calls.
SLOW_LN = CORRECT["layer_norm"] + '''
import time as _time
_correct, _spent = layer_norm, [0]

def layer_norm(x, gamma, beta, eps=1e-5):
    if _spent[0] < {calls}:
        _spent[0] += 1
        end = _time.process_time() + 0.5
        while _time.process_time() < end:
            pass
    return _correct(x, gamma, beta, eps)
'''


def test_a_slow_answer_that_reports_no_time_fails_the_cell_limit():
    """Three calls of 0.5 CPU seconds, each under the 2 s call limit: 1.5 s against a 1 s cell limit, whatever the
    process says."""
    honest = grade([SLOW_LN.format(calls=3)], TEST_LN, cell_seconds=1)
    forged = grade([SLOW_LN.format(calls=3), FORGE_REPLIES], TEST_LN, cell_seconds=1)
    for verdict in (honest, forged):
        assert not verdict["passed"] and verdict["ename"] == "TimeoutError", verdict
        # computing 1.5 CPU seconds takes at least 1.5 s of the calls' own time: either measure may be the larger
        assert "more than the time limit of 1 s per cell (c.Execute.timeout)" in verdict["evalue"], verdict
    assert grade([CORRECT["layer_norm"], FORGE_REPLIES], TEST_LN, cell_seconds=1)["passed"]


def test_cpu_of_a_child_that_no_parent_collects_still_counts():
    """A child forked with SIGCHLD ignored is reaped by the kernel, which then adds its time to no parent: counted
    while it was seen, its CPU seconds must stay counted after it is gone."""
    spawner = CORRECT["layer_norm"] + '''
import os, signal, time as _time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
_correct, _spent = layer_norm, [0]

def layer_norm(x, gamma, beta, eps=1e-5):
    if _spent[0] < 3:
        _spent[0] += 1
        r, w = os.pipe()
        if os.fork() == 0:
            end = _time.process_time() + 0.5
            while _time.process_time() < end:
                pass
            os.write(w, b"x")
            os._exit(0)
        os.read(r, 1)
        os.close(r)
        os.close(w)
        _time.sleep(0.2)  # the child is gone when the call returns
    return _correct(x, gamma, beta, eps)
'''
    verdict = grade([spawner], TEST_LN, cell_seconds=1)
    assert not verdict["passed"] and verdict["ename"] == "TimeoutError", verdict


def test_the_call_reply_carries_no_time_and_no_claim_about_the_computation():
    server = StudentServer(["import numpy as np", CORRECT["layer_norm"]], Limits(**LIMITS), course=LNKIT)
    try:
        server.ensure_started()
        header = {"op": "call", "name": "layer_norm", "args": None, "kwargs": None}
        blobs: list = []
        header["args"] = wire.encode_value((np.ones((2, 4)), np.ones(4), np.zeros(4), 1e-5), blobs)
        header["kwargs"] = wire.encode_value({}, blobs)
        reply, _ = server._exchange(header, blobs, 2, False)
        assert set(reply) == {"status", "result", "args_after"}, reply
    finally:
        server.close()


VIA_RMS_DIRECT = '''
import numpy as np

def layer_norm_via_rms(x, gamma, beta, eps=1e-5):
    w = x.astype(np.float64)
    m = w.mean(-1, keepdims=True)
    return ((w - m) / np.sqrt(((w - m) ** 2).mean(-1, keepdims=True) + eps) * gamma + beta).astype(x.dtype)
'''


@pytest.mark.parametrize("how", ["forges the reply", "calls rms_norm and discards it"])
def test_a_layer_norm_computed_directly_fails_via_rms_whatever_it_claims(how):
    cells = [CORRECT["rms_norm"], VIA_RMS_DIRECT]
    if how == "forges the reply":
        cells.append(FORGE_REPLIES)
    else:
        cells[1] = VIA_RMS_DIRECT.replace("    m = w.mean(-1, keepdims=True)\n",
                                          "    m = w.mean(-1, keepdims=True)\n    rms_norm(w - m, gamma, eps)\n")
    verdict = grade(cells, TEST_VIA_RMS)
    assert not verdict["passed"]
    assert "must compute its result by calling your rms_norm on the centred input" in verdict["evalue"]
    assert grade([CORRECT["rms_norm"], CORRECT["layer_norm_via_rms"], FORGE_REPLIES], TEST_VIA_RMS)["passed"]


def test_the_stand_in_takes_the_name_even_where_the_notebook_has_no_rms_norm():
    """The function is graded apart from the student's rms_norm: present, broken or missing."""
    assert grade([CORRECT["layer_norm_via_rms"]], TEST_VIA_RMS)["passed"]


@pytest.mark.parametrize("right", [r for r in ALSO_RIGHT if r.function == "running_stats"], ids=lambda r: r.id)
def test_np_var_scores_out_of_the_kernel_too(right, capsys):
    from lnkit import checks

    server = StudentServer(["import numpy as np", right.source], Limits(**LIMITS), course=LNKIT)
    try:
        function = StudentFunction(server, right.function)
        for part in ("contract", "near-zero", "far-from-zero"):
            checks.check_running_stats(function, part=part)
            checks.check_running_stats(function, part=part, hidden=True)
    finally:
        server.close()
    assert capsys.readouterr().out.count("cases passed") == 6
