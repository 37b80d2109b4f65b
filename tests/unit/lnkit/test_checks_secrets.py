"""Hidden cases drawn from a course's secret: a correct answer passes them whatever the secret and whoever the
student, a wrong one fails.

Grading draws every hidden case from a key per submission, derived from the course's secret (.grading-secret beside the
gradebook), the student and what they submitted (nbgrader_sandbox.intake.hidden_cases_key, passed to
lnkit.checks.set_hidden_secret), so each submission is graded on inputs no student could know or carry from another
grading. That is only fair if the inputs a key can produce never fail a correct answer on rounding: here every check
grades the course's correct answers (and a second, float32-only one, computed the way fast code is) under many random
secrets, and under the keys of many students and submissions.
"""

from __future__ import annotations

import contextlib
import io
import os

import pytest
from corpus import CHECKS, WRONG, student

from lnkit import checks
from nbgrader_sandbox.intake import hidden_cases_key

SECRETS = [bytes([i]) * 4 + os.urandom(28) for i in range(40)]
# the keys grading derives: one course's secret, 40 students, each with a submission of their own
STUDENT_KEYS = [hidden_cases_key(SECRETS[0], f"student-{i}", "01-layernorm", "01-layernorm", os.urandom(32).hex())
                for i in range(40)]


@pytest.fixture(autouse=True)
def _public_seed_afterwards():
    yield
    checks.set_hidden_secret(None)


@pytest.mark.parametrize("function", sorted(CHECKS))
def test_a_correct_answer_passes_the_hidden_cases_of_every_secret_and_every_student(function):
    check = getattr(checks, CHECKS[function][0])
    failed = []
    for secret in SECRETS + STUDENT_KEYS:
        checks.set_hidden_secret(secret)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                check(student(function), hidden=True)
        except AssertionError as e:
            failed.append((secret.hex()[:16], str(e).splitlines()[0][:300]))
    assert failed == [], failed


def test_the_secret_decides_the_hidden_cases_and_the_public_seed_stays_the_default():
    runs = []
    layer_norm = student("layer_norm")
    for secret in (None, SECRETS[0], SECRETS[1], SECRETS[0]):
        seen: list = []

        def record(x, gamma, beta, eps=1e-5):
            seen.append(x.tobytes())
            return layer_norm(x, gamma, beta, eps)

        checks.set_hidden_secret(secret)
        with contextlib.redirect_stdout(io.StringIO()):
            checks.check_layer_norm(record, hidden=True)
        runs.append(seen)
    assert runs[1] == runs[3] and runs[0] != runs[1] and runs[1] != runs[2]


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        checks.set_hidden_secret(b"short")


@pytest.mark.parametrize("wrong", WRONG, ids=lambda w: w.id)
def test_every_wrong_answer_still_fails_a_graded_cell_under_a_secret(wrong):
    """A graded test cell runs the visible check, then the hidden one: one of them must fail each wrong answer."""
    checks.set_hidden_secret(SECRETS[2])
    check = getattr(checks, CHECKS[wrong.function][0])
    function = student(wrong.function, wrong.source)
    with pytest.raises(AssertionError), contextlib.redirect_stdout(io.StringIO()):
        check(function)
        check(function, hidden=True)
