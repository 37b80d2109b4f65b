"""lnkit.checks: every check passes a correct answer, and fails each wrong answer of tests/corpus.py with its own
message.

The checks are what graded notebooks run, so the properties that matter to nbgrader are tested too: nothing on
stderr, a visible check under a second, hidden cases that differ from the visible ones, and no torch at import.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from corpus import ALSO_RIGHT, CHECKS, CORRECT, SOLUTION_EXPRESSIONS, WRONG, plain

from lnkit import checks


def define(*sources: str) -> dict:
    """Run solution cells as a notebook would, in one namespace, and return it."""
    namespace: dict = {}
    for source in sources:
        exec(compile(source, "<solution cell>", "exec"), namespace)  # noqa: S102 - the corpus is ours
    return namespace


def student(function: str, source: str | None = None):
    # layer_norm_via_rms calls the student's rms_norm: define it first, from the correct answers
    needs = ["rms_norm"] if function == "layer_norm_via_rms" else []
    return define(*(CORRECT[n] for n in needs), source or CORRECT[function])[function]


@pytest.mark.parametrize("function", sorted(CHECKS))
@pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
def test_correct_answer_passes(function, hidden, capsys):
    check = getattr(checks, CHECKS[function][0])
    check(student(function), hidden=hidden)
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.startswith(f"{CHECKS[function][0]}: ") and out.out.rstrip().endswith("cases passed")
    assert out.out.count("\n") == 1  # one short line


@pytest.mark.parametrize("right", ALSO_RIGHT, ids=[r.id for r in ALSO_RIGHT])
@pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
def test_another_right_answer_passes_every_part(right, hidden, capsys):
    """Values are graded, not how they were computed: np.var's two passes score as Welford's one pass does."""
    check = getattr(checks, CHECKS[right.function][0])
    answer = student(right.function, right.source)
    parts = {"running_stats": ("contract", "near-zero", "far-from-zero")}.get(right.function, ())
    check(answer, hidden=hidden)
    for part in parts:
        check(answer, hidden=hidden, part=part)
    assert capsys.readouterr().out.count("cases passed") == 1 + len(parts)


@pytest.mark.parametrize("wrong", WRONG, ids=[w.id for w in WRONG])
def test_wrong_answer_fails_with_its_message(wrong, capsys):
    check = getattr(checks, CHECKS[wrong.function][0])
    with pytest.raises(AssertionError) as info:
        check(student(wrong.function, wrong.source))
    message = str(info.value)
    assert message.startswith(CHECKS[wrong.function][0])
    for words in wrong.words:
        assert words.lower() in message.lower(), f"{words!r} not in:\n{message}"
    assert capsys.readouterr().err == ""


def test_the_corpus_covers_every_check():
    assert set(CHECKS) == set(CORRECT)
    assert {w.function for w in WRONG} == set(CHECKS)
    assert set(checks.__all__) == {c for c, _ in CHECKS.values()}


@pytest.mark.parametrize("function", sorted(CHECKS))
def test_blank_answer_is_told_it_is_not_written(function):
    def blank(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not written yet"):
        getattr(checks, CHECKS[function][0])(blank)


def test_message_names_the_smallest_failing_input():
    wrong = next(w for w in WRONG if w.id == "ln-unbiased")
    with pytest.raises(AssertionError) as info:
        checks.check_layer_norm(student("layer_norm", wrong.source))
    message = str(info.value)
    assert "smallest failing input: layer_norm(x" in message
    assert "expected:" in message and "got:" in message


@pytest.mark.parametrize("function", ["layer_norm", "ln_parameters", "count_statistics"])
def test_hidden_cases_catch_answers_hard_coded_for_the_visible_ones(function):
    """An answer that replays the visible cases' expected outputs passes the visible check and fails the hidden one."""
    check = getattr(checks, CHECKS[function][0])
    reference = student(function)
    seen: dict = {}

    def recording(*args):
        out = reference(*args)
        seen[repr(args)] = out
        return out

    check(recording)

    def replay(*args):
        if repr(args) in seen:
            return seen[repr(args)]
        return 0 if CHECKS[function][0] != "check_layer_norm" else np.zeros_like(args[0])

    check(replay)  # the visible check cannot tell
    with pytest.raises(AssertionError):
        check(replay, hidden=True)


@pytest.mark.parametrize("function", sorted(CHECKS))
def test_a_visible_check_takes_under_a_second(function):
    check = getattr(checks, CHECKS[function][0])
    answer = student(function)
    start = time.perf_counter()
    check(answer)
    assert time.perf_counter() - start < 1.0


def test_warnings_never_reach_stderr(capfd):
    """An answer that triggers NumPy's warnings (0/0, overflow) fails quietly: nbgrader scores stderr as failure."""
    wrong = next(w for w in WRONG if w.id == "ln-no-eps")
    with pytest.raises(AssertionError):
        checks.check_layer_norm(student("layer_norm", wrong.source))
    assert capfd.readouterr().err == ""


def test_an_exception_in_the_answer_is_reported_with_its_input():
    def broken(x, gamma, beta, eps=1e-5):
        raise KeyError("oops")

    with pytest.raises(AssertionError, match=r"raised KeyError: 'oops'\n  on the input layer_norm\(x"):
        checks.check_layer_norm(broken)


def test_a_function_must_be_passed():
    with pytest.raises(AssertionError, match="pass your function itself"):
        checks.check_layer_norm(None)


def test_torch_builtin_call_is_noticed():
    torch = pytest.importorskip("torch")

    def layer_norm(x, gamma, beta, eps=1e-5):
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return torch.layer_norm(t(x), x.shape[-1:], t(gamma), t(beta), eps).numpy()

    with pytest.raises(AssertionError, match="you called torch.layer_norm"):
        checks.check_layer_norm(layer_norm)


def test_a_check_leaves_the_profiler_as_it_found_it():
    sentinel = lambda *a: None  # noqa: E731
    sys.setprofile(sentinel)
    try:
        checks.check_ln_applications(student("ln_applications"))
        assert sys.getprofile() is sentinel
    finally:
        sys.setprofile(None)


def test_importing_checks_pulls_in_numpy_only():
    code = "import sys; import lnkit.checks; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stderr == ""
    loaded = set(out.stdout.split())
    assert not {"torch", "matplotlib", "nbgrader", "pandas", "lnkit.gpt2"} & loaded


def _wrong(wrong_id):
    wrong = next(w for w in WRONG if w.id == wrong_id)
    return student(wrong.function, wrong.source)


def test_backward_outputs_are_graded_separately(capsys):
    summed_over_axis0 = _wrong("backward-sum-axis0")
    checks.check_layer_norm_backward(summed_over_axis0, outputs="dx")
    assert capsys.readouterr().out.startswith("check_layer_norm_backward (dx): ")
    with pytest.raises(AssertionError, match="summed over axis 0 only"):
        checks.check_layer_norm_backward(summed_over_axis0, outputs="params")
    constant_stats = _wrong("backward-constant-stats")
    checks.check_layer_norm_backward(constant_stats, outputs="params")
    with pytest.raises(AssertionError, match="as constants"):
        checks.check_layer_norm_backward(constant_stats, outputs="dx")


def test_fit_gain_and_bias_are_graded_separately():
    source = CORRECT["fit_gain_bias"].replace("beta = my - gamma * mx", "beta = my")
    intercept_forgotten = define(source)["fit_gain_bias"]
    checks.check_fit_gain_bias(intercept_forgotten, outputs="gamma")
    with pytest.raises(AssertionError, match="beta is the mean of y"):
        checks.check_fit_gain_bias(intercept_forgotten, outputs="beta")


def test_running_stats_parts():
    naive = _wrong("running-naive-one-pass")
    checks.check_running_stats(naive, part="near-zero")
    with pytest.raises(AssertionError, match="Welford"):
        checks.check_running_stats(naive, part="far-from-zero")
    with pytest.raises(ValueError):
        checks.check_running_stats(naive, part="middle")


def test_a_tuple_of_the_wrong_length_is_named():
    with pytest.raises(AssertionError,
                       match=r"must return a tuple of 2 arrays, \(mean, var\); it returned a tuple of 3"):
        checks.check_layer_norm_stats(lambda x: (x.mean(-1), x.var(-1), 0))


@pytest.mark.parametrize("wrong_id", ["fit-on-raw-x", "fit-by-std", "backward-constant-stats",
                                      "running-naive-one-pass", "running-np-var-in-float16"])
def test_a_wrong_value_still_meets_the_contract(wrong_id, capsys):
    wrong = next(w for w in WRONG if w.id == wrong_id)
    check = getattr(checks, CHECKS[wrong.function][0])
    check(student(wrong.function, wrong.source), part="contract")
    assert "(contract: types, shapes, dtypes, inputs left unchanged)" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        check(student(wrong.function, wrong.source))


@pytest.mark.parametrize("wrong_id", ["backward-calls-lnkit", "backward-calls-torch-autograd"])
def test_calling_the_reference_breaks_the_contract(wrong_id):
    wrong = next(w for w in WRONG if w.id == wrong_id)
    with pytest.raises(AssertionError, match="you called"):
        getattr(checks, CHECKS[wrong.function][0])(student(wrong.function, wrong.source), part="contract")


def test_the_contract_catches_a_lost_dtype():
    source = CORRECT["layer_norm_backward"].replace("return dx.astype(x.dtype)", "return dx.astype(np.float64)")
    with pytest.raises(AssertionError, match="loses the input's dtype"):
        checks.check_layer_norm_backward(define(source)["layer_norm_backward"], part="contract")


def test_layer_norm_via_rms_is_graded_apart_from_the_students_rms_norm():
    """A wrong rms_norm costs the rms_norm check only; the student's rms_norm is back in place afterwards."""
    eps_outside = next(w for w in WRONG if w.id == "rms-eps-outside")
    namespace = define(eps_outside.source, CORRECT["layer_norm_via_rms"])
    theirs = namespace["rms_norm"]
    with pytest.raises(AssertionError, match="eps is outside"):
        checks.check_rms_norm(namespace["rms_norm"])
    checks.check_layer_norm_via_rms(namespace["layer_norm_via_rms"])
    assert namespace["rms_norm"] is theirs


# --- what a student is shown ----------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[3]


def _message(wrong) -> checks.CheckFailed:
    with pytest.raises(checks.CheckFailed) as info:
        getattr(checks, CHECKS[wrong.function][0])(student(wrong.function, wrong.source))
    return info.value


@pytest.mark.parametrize("wrong", WRONG, ids=[w.id for w in WRONG])
def test_a_message_names_the_mistake_without_writing_the_answer(wrong):
    """The words of the corpus name the mistake (test above); the solution's own expression never appears."""
    message = str(_message(wrong))
    text = plain(message)
    for expression in SOLUTION_EXPRESSIONS[wrong.function]:
        assert plain(expression) not in text, f"{wrong.id}: the message writes out {expression!r}"
    first = message.split("\n")[0]
    contract = ("dtype", "plain Python int")  # what the function returns is of the wrong kind: no chapter needed
    if "cases failed)" in first and not any(c in first for c in contract) and CHECKS[wrong.function][1] <= "08":
        assert re.search(r'chapter \d, "[^"]+"', first), f"{wrong.id}: no section named:\n{message}"


def test_every_function_has_its_solution_expressions():
    assert set(SOLUTION_EXPRESSIONS) == set(CHECKS)
    assert all(SOLUTION_EXPRESSIONS.values())


@pytest.mark.parametrize("wrong", [w for w in WRONG if CHECKS[w.function][1] == "03-counting"
                                   or w.function == "add_layer_norm_traffic"], ids=lambda w: w.id)
def test_a_count_shows_what_was_returned_not_the_right_count(wrong):
    """03 and 10's traffic count ask the student to work out a counting rule: the right value of the failing input
    is not shown (a value of the wrong kind is named as such)."""
    message = str(_message(wrong))
    assert "expected" not in message and ("\n  got:" in message or "not an int" in message)


def test_sections_named_in_messages_exist_in_their_chapters():
    """A message that sends the student to `chapter N, "Section"` names a heading that chapter has."""
    source = "\n".join(p.read_text() for p in sorted((ROOT / "lnkit" / "checks").glob("ch*.py")))
    named = set(re.findall(r'chapter (\d+), \\?"(.+?)\\?"', source))
    assert len(named) >= 8, named

    def bare(text: str) -> str:
        return re.sub(r"[\\\"'`*$]", "", text).strip().lower()

    for number, section in sorted(named):
        chapter = next((ROOT / "book").glob(f"ch{int(number):02d}_*.md"))
        headings = {bare(line.lstrip("#")) for line in chapter.read_text().splitlines() if line.startswith("#")}
        assert bare(section) in headings, f"{chapter.name} has no section {section!r}"


@pytest.mark.parametrize("wrong_id", ["ln-eps-outside", "backward-constant-stats", "ln-statistics-12x1024",
                                      "pre-ln-is-post-ln"])
def test_a_failure_renders_as_its_message_only(wrong_id):
    """What IPython shows (``_render_traceback_``): the message wrapped to Validate's width, no frame or path."""
    failure = _message(next(w for w in WRONG if w.id == wrong_id))
    lines = failure._render_traceback_()
    assert lines[0].startswith(CHECKS[next(w for w in WRONG if w.id == wrong_id).function][0])
    assert max(len(line) for line in lines) <= checks.CheckFailed.WIDTH
    assert " ".join(" ".join(lines).split()) == " ".join(str(failure).split())
    shown = "\n".join(lines)
    for internal in ("Traceback", "File ", "_engine", "lnkit/", "site-packages", "_fail", "line "):
        assert internal not in shown


def test_ipython_shows_the_message_and_no_frame(capsys):
    """In a real IPython shell (what a notebook's kernel runs), a failing check prints its message and nothing else."""
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactiveshell.InteractiveShell.instance()
    wrong = next(w for w in WRONG if w.id == "ln-unbiased")
    shell.user_ns["source"] = wrong.source
    shell.run_cell("exec(source)")
    capsys.readouterr()
    shell.run_cell("from lnkit.checks import check_layer_norm\ncheck_layer_norm(layer_norm)")
    out = capsys.readouterr()
    shown = out.out + out.err
    assert shown.lstrip().startswith("check_layer_norm (")
    assert "unbiased" in shown
    for internal in ("Traceback", "File ", "_engine", "lnkit/", "skipping hidden", "AssertionError"):
        assert internal not in shown, shown
    interactiveshell.InteractiveShell.clear_instance()


def test_a_float16_backward_fails_the_dx_cell():
    """Computed in float16, dx of rows in the thousands is all zeros; the dx cell (5 points) must see it."""
    wrong = next(w for w in WRONG if w.id == "backward-float16")
    with pytest.raises(checks.CheckFailed, match="float16 input overflows"):
        checks.check_layer_norm_backward(student(wrong.function, wrong.source), outputs="dx")
