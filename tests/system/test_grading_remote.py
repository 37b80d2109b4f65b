"""nbgrader_sandbox without nbgrader: the wire format, the student server and the checker, on single functions.

The same checks, run out of the kernel through a StudentFunction, must give the same verdicts and messages as in the
kernel, and must turn every way a call can go wrong into its own message.
"""

from __future__ import annotations

import numpy as np
import pytest
from corpus import CORRECT, LNKIT_COURSE, WRONG

from lnkit import checks
from nbgrader_sandbox import wire
from nbgrader_sandbox.checker import run_job
from nbgrader_sandbox.course import load as load_course
from nbgrader_sandbox.proxy import StudentFunction
from nbgrader_sandbox.remote import Limits, StudentServer

LIMITS = {"call_seconds": 2, "start_seconds": 10}
LNKIT = load_course(LNKIT_COURSE)
TEST = "from lnkit.checks import check_layer_norm\n\ncheck_layer_norm(layer_norm)\n"


def grade(source: str, test: str = TEST) -> dict:
    out = run_job({"cells": ["import numpy as np", source], "tests": [{"grade_id": "t", "source": test}],
                   "course": LNKIT_COURSE, "limits": LIMITS})
    return {**out["verdicts"][0], "events": out["events"]}


def roundtrip(value):
    blobs: list = []
    tree = wire.encode_value(value, blobs)
    header, got = wire.unpack(wire.pack({"v": tree}, blobs)[8:])
    return wire.decode_value(header["v"], got)


def test_plain_values_survive_the_wire_with_their_types():
    value = (np.arange(6.0).reshape(2, 3), np.float16(1.5), np.int64(7), 3, 2**70, True, None, "s", [1.0, float("nan")],
             {"k": np.zeros((0, 4), np.float32)}, np.float64(np.inf), np.array(2.5))
    got = roundtrip(value)
    assert type(got) is tuple and len(got) == len(value)
    assert type(got[0]) is np.ndarray and np.array_equal(got[0], value[0])
    assert type(got[1]) is np.float16 and type(got[2]) is np.int64 and type(got[3]) is int and got[4] == 2**70
    assert got[5] is True and got[6] is None and got[7] == "s" and np.isnan(got[8][1])
    assert got[9]["k"].shape == (0, 4) and got[9]["k"].dtype == np.float32
    assert got[11].shape == () and type(got[11]) is np.ndarray  # a 0-d array stays 0-d


def test_objects_that_could_fake_equality_never_cross_the_wire():
    class Sub(np.ndarray):
        def __eq__(self, other):
            return True

    class Anything:
        def __eq__(self, other):
            return True

    for value in (np.zeros(3).view(Sub), Anything(), np.array([object()], dtype=object), {1: 2}):
        got = roundtrip(value)
        assert isinstance(got, wire.Opaque), value
        assert got != got and not (got == 1)


def test_a_frame_larger_than_the_limit_is_refused():
    with pytest.raises(wire.WireError):
        wire.read_frame(_fd_with(int(wire.MAX_FRAME + 1).to_bytes(8, "little")))


def _fd_with(data: bytes) -> int:
    import os

    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


@pytest.mark.parametrize("wrong", [w for w in WRONG if w.function in ("layer_norm", "count_statistics")],
                         ids=lambda w: w.id)
def test_out_of_kernel_messages_are_the_in_kernel_messages(wrong):
    check = getattr(checks, f"check_{wrong.function}")
    namespace: dict = {}
    exec(wrong.source, namespace)  # noqa: S102 - the corpus is ours
    with pytest.raises(AssertionError) as inside:
        check(namespace[wrong.function])
    server = StudentServer(["import numpy as np", wrong.source], Limits(**LIMITS), course=LNKIT)
    try:
        with pytest.raises(AssertionError) as outside:
            check(StudentFunction(server, wrong.function))
    finally:
        server.close()
    assert str(outside.value) == str(inside.value)


def test_a_correct_answer_passes_out_of_the_kernel_for_every_check(capsys):
    from corpus import CHECKS

    cells = ["import numpy as np", *CORRECT.values()]
    server = StudentServer(cells, Limits(**LIMITS), course=LNKIT)
    try:
        for function, (check, _) in sorted(CHECKS.items()):
            getattr(checks, check)(StudentFunction(server, function), hidden=True)
    finally:
        server.close()
    assert capsys.readouterr().out.count("cases passed") == len(CHECKS)


def test_via_rms_is_graded_with_a_stand_in_rms_norm():
    wrong_rms = CORRECT["rms_norm"].replace("np.sqrt(ms + eps)", "(ms + eps)")  # graded by check_rms_norm only
    assert wrong_rms != CORRECT["rms_norm"]
    out = grade(wrong_rms + CORRECT["layer_norm_via_rms"],
                "from lnkit.checks import check_layer_norm_via_rms\ncheck_layer_norm_via_rms(layer_norm_via_rms)\n")
    assert out["passed"], out["evalue"]
    never = grade("import numpy as np\ndef layer_norm_via_rms(x, gamma, beta, eps=1e-5):\n"
                  "    xc = x.astype(np.float64) - x.astype(np.float64).mean(-1, keepdims=True)\n"
                  "    return (xc / np.sqrt((xc**2).mean(-1, keepdims=True) + eps) * gamma + beta).astype(x.dtype)\n",
                  "from lnkit.checks import check_layer_norm_via_rms\ncheck_layer_norm_via_rms(layer_norm_via_rms)\n")
    assert not never["passed"] and "must compute its result by calling your rms_norm" in never["evalue"]


@pytest.mark.parametrize("source, words, event", [
    ("import lnkit\ndef layer_norm(x, g, b, eps=1e-5):\n    return lnkit.layer_norm(x, g, b, eps)\n",
     "you called lnkit.layer_norm", "reference"),
    ("from lnkit import layer_norm as ref\ndef layer_norm(x, g, b, eps=1e-5):\n"
     "    try:\n        return ref(x, g, b, eps)\n"
     "    except BaseException:\n        return x\n", "you called lnkit.layer_norm", "reference"),
    ("def layer_norm(x, g, b, eps=1e-5):\n    while True:\n        pass\n", "within the time limit of 2 s", "timeout"),
    ("import os\ndef layer_norm(x, g, b, eps=1e-5):\n    os._exit(3)\n", "exited with status 3", "died"),
    ("import os, signal\ndef layer_norm(x, g, b, eps=1e-5):\n    os.kill(os.getpid(), signal.SIGSEGV)\n",
     "crashed with SIGSEGV", "died"),
    ("def layer_norm(x, g, b, eps=1e-5):\n    return np.ones(100 * 1024**3 // 8)\n", "ran out of memory", "memory"),
    ("def layer_norm(x, g, b, eps=1e-5):\n    raise SystemExit(1)\n", "raised SystemExit", "SystemExit"),
    ("def layer_norm(x, g, b, eps=1e-5):\n    return layer_norm(x, g, b, eps)\n", "RecursionError", "RecursionError"),
    ("class A(np.ndarray):\n    pass\ndef layer_norm(x, g, b, eps=1e-5):\n    return np.zeros_like(x).view(A)\n",
     "a subclass of numpy.ndarray", "refused"),
    ("while True:\n    pass\n", "did not finish running within 10 s", "timeout"),
    ("def other(x):\n    return x\n", "layer_norm is not defined", None),
])
def test_every_way_a_call_goes_wrong_has_its_message(source, words, event):
    out = grade(source)
    assert not out["passed"]
    assert words in out["evalue"], out["evalue"]
    if event:
        assert event in [e["event"] for e in out["events"]], out["events"]


def test_printing_costs_nothing_and_stderr_does_not_count():
    source = (CORRECT["layer_norm"] + "\nimport sys\nfor i in range(1_000_000):\n    print(i)\n"
              "print('x', file=sys.stderr)\n")
    out = grade(source)
    assert out["passed"] and out["stdout"] == "check_layer_norm: 15 cases passed\n"


def test_the_server_never_sees_the_test_and_runs_in_its_sandbox():
    probe = ("import os, sys\n"
             "SEEN = (os.getcwd(), sorted(os.listdir('.')), sys.flags.isolated, os.getpid(), sorted(os.listdir('/')))\n"
             "def layer_norm(x, g, b, eps=1e-5):\n    raise RuntimeError(repr(SEEN))\n")
    out = grade(probe, TEST + "# a secret only the checker knows\n")
    # its own empty working folder, isolated mode, pid 2 of its own PID namespace (bwrap's init is 1), and a root
    # that holds the system, the sandbox's packages and nothing of the course
    assert "('/home/student', [], 1, 2, ['bin', 'dev', 'etc', 'home', 'lib', 'lib64'" in out["evalue"], out["evalue"]
    assert "'work'" not in out["evalue"] and "secret" not in out["evalue"]


def test_limits_reject_bad_values():
    with pytest.raises(ValueError, match="call_seconds"):
        Limits(call_seconds=0)
    with pytest.raises(ValueError, match="memory_bytes"):
        Limits(memory_bytes=1024)
    with pytest.raises(TypeError, match="cells"):
        StudentServer("def f(): pass")



def test_where_no_sandbox_can_be_made_the_refusal_names_the_setting_that_exists(monkeypatch):
    from nbgrader_sandbox import remote, sandbox
    from nbgrader_sandbox.settings import GradingSandbox

    monkeypatch.setattr(sandbox, "unavailable", lambda: "bwrap is not installed")
    with pytest.raises(remote.SandboxRefused, match=r"c\.GradingSandbox\.allow_unsandboxed = True") as refused:
        remote.StudentServer(["x = 1"])
    assert "allow_unsandboxed" in GradingSandbox.class_trait_names()  # the setting the message names is real
    assert "bwrap is not installed" in str(refused.value)
