"""Hidden cases that no one can collect and share (issue 18, class 3).

- Each submission's hidden cases come from its own key, an HMAC of the course's secret over the student, the
  assignment, the notebook and a hash of the submitted folder (nbgrader_sandbox.intake.hidden_cases_key): two students
  with the same notebook, or one student who changes anything in a resubmission, get other inputs; the same submission
  graded again gets the same ones. Checked on the functions and through nbgrader's own converter.
- No message about a hidden case shows an input, an expected value or what the function returned: every wrong answer
  of the corpus, and answers written to smuggle the input out (in an exception's message, in the name of its class,
  as their result, as a "reference" name), fail with messages that hold no number of the hidden case.
- The student's own text in a verdict is cut: an exception class whose name is 24 MB long makes a verdict of a few KB.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from corpus import CHECKS, CORRECT, LNKIT_COURSE, WRONG, student, write_submission

from lnkit import checks
from lnkit.checks import _engine
from nbgrader_sandbox import proxy, wire
from nbgrader_sandbox.intake import course_secret, hidden_cases_key, submission_digest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASSIGNMENT = "01-layernorm"
SECRET = bytes(range(32))
KEY = hidden_cases_key(SECRET, "someone", ASSIGNMENT, ASSIGNMENT, "0" * 64)


@pytest.fixture(autouse=True)
def _public_seed_afterwards():
    yield
    checks.set_hidden_secret(None)


def hidden_inputs(key: bytes) -> list[bytes]:
    """The x of every hidden case check_layer_norm draws from key."""
    seen: list = []
    correct = student("layer_norm")

    def record(x, gamma, beta, eps=1e-5):
        seen.append(x.tobytes() + repr(eps).encode())
        return correct(x, gamma, beta, eps)

    checks.set_hidden_secret(key)
    with contextlib.redirect_stdout(io.StringIO()):
        checks.check_layer_norm(record, hidden=True)
    return seen


def submit(folder: Path, answers: dict, files: dict | None = None) -> Path:
    write_submission(ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", answers, folder / f"{ASSIGNMENT}.ipynb")
    for name, data in (files or {}).items():
        (folder / name).write_bytes(data)
    return folder


def key_of(folder: Path, who: str, secret: bytes = SECRET) -> bytes:
    return hidden_cases_key(secret, who, ASSIGNMENT, ASSIGNMENT, submission_digest(str(folder)))


# --- one key per student and per submission -------------------------------------------------------------------------


def test_each_student_and_each_submission_gets_its_own_hidden_cases_and_a_regrade_the_same(tmp_path):
    same = {"layer_norm": CORRECT["layer_norm"]}
    ann = submit(tmp_path / "ann" / ASSIGNMENT, same)
    bob = submit(tmp_path / "bob" / ASSIGNMENT, same)
    assert (ann / f"{ASSIGNMENT}.ipynb").read_bytes() == (bob / f"{ASSIGNMENT}.ipynb").read_bytes()
    first = hidden_inputs(key_of(ann, "ann"))
    assert hidden_inputs(key_of(ann, "ann")) == first  # graded again: the same cases
    assert not set(hidden_inputs(key_of(bob, "bob"))) & set(first)  # a classmate, the same notebook: none shared
    ann2 = submit(tmp_path / "ann-again" / ASSIGNMENT, {"layer_norm": CORRECT["layer_norm"] + "\n# v2\n"})
    assert not set(hidden_inputs(key_of(ann2, "ann"))) & set(first)  # a resubmission, one comment changed
    with_table = submit(tmp_path / "ann-table" / ASSIGNMENT, same, {"table.npy": b"\x93NUMPY learnt"})
    assert not set(hidden_inputs(key_of(with_table, "ann"))) & set(first)  # the same notebook, and a file beside it
    assert not set(hidden_inputs(key_of(ann, "ann", secret=bytes(32)))) & set(first)  # another course


def test_the_digest_covers_every_entry_of_the_folder_and_follows_no_link(tmp_path):
    folder = submit(tmp_path / "s" / ASSIGNMENT, {})
    before = submission_digest(str(folder))
    assert submission_digest(str(folder)) == before
    (folder / "data").mkdir()
    assert submission_digest(str(folder)) != before
    with_folder = submission_digest(str(folder))
    (folder / "data" / "big.bin").write_bytes(os.urandom(3 * 1024**2))  # past no cap: every byte counts
    with_file = submission_digest(str(folder))
    assert with_file != with_folder
    (folder / "data" / "big.bin").write_bytes((folder / "data" / "big.bin").read_bytes()[:-1] + b"!")
    assert submission_digest(str(folder)) != with_file
    (folder / "link").symlink_to("/etc/passwd")
    os.mkfifo(folder / "fifo")
    assert submission_digest(str(folder)) not in (with_file, before)  # named by their kind; never opened
    with pytest.raises(ValueError, match="folder"):
        submission_digest(str(folder / "link"))


def test_a_key_needs_the_secret_and_every_part():
    with pytest.raises(ValueError, match="secret"):
        hidden_cases_key(b"short", "ann", ASSIGNMENT, ASSIGNMENT, "0" * 64)
    for i in range(4):
        parts = ["ann", ASSIGNMENT, ASSIGNMENT, "0" * 64]
        parts[i] = ""
        with pytest.raises(ValueError, match="expected a non-empty str"):
            hidden_cases_key(SECRET, *parts)
    # the parts cannot slide into each other: ("ab", "c") and ("a", "bc") are different keys
    assert hidden_cases_key(SECRET, "ab", "c", "n", "d") != hidden_cases_key(SECRET, "a", "bc", "n", "d")
    assert len(KEY) == 32


_GRADE = r'''
import json, sys
from nbgrader_sandbox import preprocessors as P

jobs = []
P.SafeExecute.preprocess = lambda self, nb, resources=None, km=None: (nb, resources)  # no kernel: only the job
P.CheckOutsideKernel._run_checker = lambda self, job: jobs.append(job) or {"verdicts": []}

from nbgrader.apps import NbGraderAPI
from nbgrader.apps.nbgraderapp import NbGraderApp

app = NbGraderApp()
app.initialize([])
api = NbGraderAPI(parent=app)
for student in sys.argv[1:]:
    result = api.autograde("01-layernorm", student, force=True, create=True)
    assert result["success"], result
print(json.dumps(jobs))
'''


@pytest.mark.slow
def test_nbgrader_grades_each_submission_with_its_own_key_and_never_passes_the_secret(tmp_path):
    """Through nbgrader's converter (what `nbgrader autograde` and the parallel command run), the job the checker
    gets carries the key of the submitted folder as the student handed it in, and not the course's secret."""
    course = tmp_path / "course"
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    run = lambda *argv: subprocess.run(argv, cwd=course, env=env, capture_output=True, text=True)  # noqa: E731
    out = run(str(BIN / "nbgrader"), "generate_assignment", ASSIGNMENT, "--force")
    assert out.returncode == 0, out.stderr[-3000:]
    same = {"layer_norm": CORRECT["layer_norm"]}
    for who in ("ann", "bob"):
        submit(course / "submitted" / who / ASSIGNMENT, same)

    def grade(*who: str) -> list:
        out = run(sys.executable, "-c", _GRADE, *who)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    ann, bob, ann_again = grade("ann", "bob", "ann")
    secret = course_secret(f"sqlite:///{course / 'gradebook.db'}")
    for job, who in ((ann, "ann"), (bob, "bob")):
        # the sandbox's key is the submission's autograded folder (its uid as root)
        assert job["limits"]["key"] == os.path.realpath(course / "autograded" / who / ASSIGNMENT)
        assert "secret" not in job and secret.hex() not in json.dumps(job)
        assert bytes.fromhex(job["hidden_key"]) == key_of(course / "submitted" / who / ASSIGNMENT, who, secret)
    assert ann["hidden_key"] != bob["hidden_key"] and ann_again["hidden_key"] == ann["hidden_key"]
    (course / "submitted" / "ann" / ASSIGNMENT / "notes.txt").write_text("a table, carried in a file")
    (changed,) = grade("ann")
    assert changed["hidden_key"] != ann["hidden_key"]


# --- no hidden value in any message ---------------------------------------------------------------------------------

# Answers written to carry the hidden input out through the message.
SMUGGLERS = {
    "message": "raise ValueError('INPUT ' + repr(x.ravel().tolist()))",
    "class-name": "raise type('E' + ''.join(f'{v:.6f}' for v in x.ravel()[:8]).replace('.', '_').replace('-', 'm'), "
                  "(Exception,), {})()",
    "identity": "return x",
    "shape": "return x.ravel()",
    "string": "return repr(x.ravel().tolist())",
    "scaled": "return x * 1.000001 + 0.123456",
}


def smuggler(kind: str):
    namespace: dict = {"np": np}
    body = SMUGGLERS[kind]
    exec(f"def layer_norm(x, gamma, beta, eps=1e-5):\n    {body}\n", namespace)  # noqa: S102 - ours
    return namespace["layer_norm"]


class Remote(proxy.StudentFunction):
    """A StudentFunction whose student server answers what a student's own server could: an exception of any name
    and message, or a "reference" called by any name, all made from the hidden input."""

    def __init__(self, how: str):
        super().__init__(server=None, name="layer_norm")
        self.how = how

    def remote_call(self, args, kwargs, **_):
        text = "".join(f"{v:.5f}" for v in np.ravel(args[0])[:6])
        if self.how == "reference":
            raise proxy.ReferenceCalled(f"lnkit.x{text}".replace("-", "m").replace(".", "_"))
        raise proxy.StudentRaised.of(f"E{text}", f"INPUT {text}")


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)


# every number a message may hold comes from the checks' own source (a section, a constant, a limit), or says how
# many cases failed, or how many axes an array has: none is a value drawn from the key
_SOURCE_NUMBERS = set(_numbers("\n".join(p.read_text() for p in (ROOT / "lnkit" / "checks").glob("*.py"))))


def _recorded(check, function, key: bytes) -> list:
    """Every number of the hidden cases check draws from key: the inputs and the right answers."""
    values: list = []
    correct = student(function)

    def record(*args, **kwargs):
        out = correct(*args, **kwargs)
        for v in [*args, *kwargs.values(), *(out if isinstance(out, tuple) else (out,))]:
            if isinstance(v, (np.ndarray, np.generic, int, float)) and not isinstance(v, bool):
                values.extend(np.ravel(np.asarray(v, dtype=np.float64)).tolist())
        return out

    checks.set_hidden_secret(key)
    with contextlib.suppress(AssertionError), contextlib.redirect_stdout(io.StringIO()):
        check(record, hidden=True)
    return values


def _assert_no_hidden_value(message: str, values: list) -> None:
    body = re.sub(r"\(\d+ of \d+ cases failed\)", "", message)
    body = re.sub(r"(with|has) \d+ ax[ie]s", "", body)
    assert not re.search(r"\b(expected|got)( \w+)?:\s|np\.array|shape \(\d|largest difference|INPUT|E\d", body), message
    stray = [n for n in _numbers(body) if n not in _SOURCE_NUMBERS]
    assert stray == [], (stray, message)
    for v in values:  # and, directly: no value of the case as a message would print it (random ones: 4 digits)
        if len(re.sub(r"e.*|[^0-9]", "", f"{abs(v):.4g}").lstrip("0")) == 4:
            for shown in (f"{v:.4g}", f"{v:.6f}", f"{v:.5f}", f"{v:.5g}"):
                assert shown.lstrip("-") not in body, (shown, message)


@pytest.mark.parametrize("wrong", WRONG, ids=lambda w: w.id)
def test_no_message_about_a_hidden_case_shows_a_hidden_value(wrong):
    check = getattr(checks, CHECKS[wrong.function][0])
    values = _recorded(check, wrong.function, KEY)
    checks.set_hidden_secret(KEY)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check(student(wrong.function, wrong.source), hidden=True)
    except AssertionError as e:
        _assert_no_hidden_value(str(e), values)


@pytest.mark.parametrize("kind", [*SMUGGLERS, "remote-raised", "remote-reference"])
def test_an_answer_made_to_smuggle_the_hidden_input_out_gets_no_value_back(kind):
    values = _recorded(checks.check_layer_norm, "layer_norm", KEY)
    function = Remote(kind.split("-")[1]) if kind.startswith("remote") else smuggler(kind)
    checks.set_hidden_secret(KEY)
    with pytest.raises(AssertionError) as info, contextlib.redirect_stdout(io.StringIO()):
        checks.check_layer_norm(function, hidden=True)
    message = str(info.value)
    _assert_no_hidden_value(message, values)
    assert "hidden inputs and answers are not shown" in message or "a reference implementation" in message
    if kind in ("message", "class-name", "remote-raised"):
        assert "its message is not shown for a hidden case" in message


def test_a_visible_case_still_shows_its_input_and_the_right_answer():
    function = student("layer_norm", "def layer_norm(x, gamma, beta, eps=1e-5):\n    return x * 2.0\n")
    with pytest.raises(AssertionError) as info, contextlib.redirect_stdout(io.StringIO()):
        checks.check_layer_norm(function)
    message = str(info.value)
    assert "smallest failing input: layer_norm(x" in message and "expected:" in message and "got:" in message


def test_a_hidden_failure_names_the_kind_of_case_the_mistake_and_the_section():
    wrong = next(w for w in WRONG if w.id == "stats-unbiased")
    checks.set_hidden_secret(KEY)
    with pytest.raises(AssertionError) as info, contextlib.redirect_stdout(io.StringIO()):
        checks.check_layer_norm_stats(student(wrong.function, wrong.source), hidden=True)
    message = str(info.value)
    assert "unbiased" in message and 'chapter 1, "Step 2: the biased variance"' in message
    assert re.search(r"a hidden case \(random[^)]*; x: float(16|32|64) with \d ax[ie]s\)", message), message


# --- the student's own text is cut ----------------------------------------------------------------------------------

HUGE = 24_000_000


def test_a_huge_exception_class_name_and_message_are_cut_in_the_message():
    namespace: dict = {}
    source = (f"def layer_norm(x, gamma, beta, eps=1e-5):\n"
              f"    raise type('A' * {HUGE}, (Exception,), {{}})('m' * {HUGE})\n")
    exec(source, namespace)  # noqa: S102 - ours
    for hidden in (False, True):
        with pytest.raises(AssertionError) as info, contextlib.redirect_stdout(io.StringIO()):
            checks.check_layer_norm(namespace["layer_norm"], hidden=hidden)
        message = str(info.value)
        assert len(message) < 4 * 1024, len(message)
        assert ("A" * _engine.NAME_CHARS + _engine.CUT_MARK in message) != hidden


def test_text_from_the_wire_is_cut_on_the_checker_side():
    blobs: list = []
    opaque = wire.decode_value({"opaque": "T" * HUGE, "why": "w" * HUGE}, blobs)
    assert len(opaque.type_name) == wire.NAME_CHARS + len(wire.CUT_MARK) and opaque.type_name.endswith("(cut)")
    assert len(opaque.why) <= wire.NAME_CHARS + len(wire.CUT_MARK)
    assert wire.cut("short", 10) == "short" and wire.cut(12345, 3) == "123" + wire.CUT_MARK


def test_the_graded_outputs_are_bounded_whatever_the_verdict_holds():
    from nbgrader_sandbox.preprocessors import _bounded, _outputs

    verdict = _bounded({"passed": False, "stdout": "p" * HUGE, "ename": "A" * HUGE, "evalue": "m" * HUGE})
    size = len(json.dumps(_outputs(verdict)))
    assert size < 3 * wire.VERDICT_CHARS + 4 * wire.NAME_CHARS, size
    assert _bounded({"passed": "yes"})["passed"] is False  # only True passes


@pytest.mark.slow
def test_a_24_megabyte_exception_class_makes_a_verdict_of_a_few_kilobytes():
    """Through the real student server (in its sandbox) and the checker: raised by the function, by a cell of the
    notebook at load time, and by a test cell that calls the function itself."""
    from nbgrader_sandbox.checker import run_job

    raising = (f"def layer_norm(x, gamma, beta, eps=1e-5):\n"
               f"    raise type('A' * {HUGE}, (Exception,), {{}})('m' * {HUGE})\n")
    at_load = f"raise type('B' * {HUGE}, (Exception,), {{}})('n' * {HUGE})\n"
    tests = [{"grade_id": "check", "source": "from lnkit.checks import check_layer_norm\ncheck_layer_norm(layer_norm)"},
             {"grade_id": "hidden", "source": "from lnkit.checks import check_layer_norm\n"
                                              "check_layer_norm(layer_norm, hidden=True)"},
             {"grade_id": "direct",
              "source": "import numpy as np\nlayer_norm(np.ones((2, 3)), np.ones(3), np.zeros(3))"}]
    out = run_job({"cells": ["import numpy as np", raising, at_load], "tests": tests,
                   "course": LNKIT_COURSE, "limits": {"call_seconds": 5, "start_seconds": 20},
                   "hidden_key": KEY.hex()})
    size = len(json.dumps(out))
    assert size < 16 * 1024, size
    verdicts = {v["grade_id"]: v for v in out["verdicts"]}
    assert not any(v["passed"] for v in verdicts.values())
    assert "A" * wire.NAME_CHARS + wire.CUT_MARK in verdicts["check"]["evalue"]
    assert "A" * 201 not in json.dumps(out) and "m" * (wire.MESSAGE_CHARS + 1) not in json.dumps(out)
    assert "its message is not shown for a hidden case" in verdicts["hidden"]["evalue"]
    assert out["load_errors"][0]["type"] == "B" * wire.NAME_CHARS + wire.CUT_MARK
