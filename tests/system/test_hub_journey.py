"""The course on a real JupyterHub, end to end, driven in a browser as its people would use it.

What it starts (and stops): Linux users made for the run (one instructor, three students, their homes, two groups);
JupyterHub from PyPI with PAM log-in and one JupyterLab per user (hub/jupyterhub_config.py), behind
configurable-http-proxy from npm (installed into .venv/hub-proxy when missing); the instructor's course folder, a copy
of this repository's nbgrader_config.py, solutions/, exercises/ and lnkit/ owned by the instructor; an exchange
folder set in configuration (hub/jupyter/common/nbgrader_config.py) that every user's nbgrader loads.

The journey, in Chromium (Debian's, through Playwright): the instructor generates and releases 01-layernorm and
06-pre-post-ln in the formgrader; three students log in, fetch them from the Assignment List, write their answers
in the notebooks (correct, wrong, cheating: a patched check), validate and submit; the instructor collects,
autogrades (through nbgrader_config.py's Autograde settings, i.e. the course's sandboxed grading), grades 06's written
answer by hand, generates and releases feedback; the students fetch their feedback and read it. Asserted: the
gradebook, the feedback pages, the exported CSV. Each step is timed; screenshots and timings go to
_build/hub-journey/ (or $LNKIT_HUB_SHOTS).

It needs root (it creates users) and is marked slow. Run it alone with

    sudo env PATH=$PWD/.venv/bin:$PATH python -m pytest -q tests/system/test_hub_journey.py -s

(-s prints each step and its time.) Set LNKIT_HUB_KEEP=1 to keep the users, the hub's folder and its log.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from accounts import readable, user_python  # noqa: E402
from corpus import CORRECT  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PREFIX = "lnhub"  # every user and group of the run starts with it; leftovers of a killed run are removed first
INSTRUCTOR = f"{PREFIX}-teacher"
STUDENTS = {f"{PREFIX}-ada": "correct", f"{PREFIX}-bo": "wrong", f"{PREFIX}-cy": "cheating"}
GROUPS = {"instructors": f"{PREFIX}-instructors", "students": f"{PREFIX}-students"}
PROXY_DIR = ROOT / ".venv" / "hub-proxy"
PROXY = PROXY_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
SHOTS = Path(os.environ.get("LNKIT_HUB_SHOTS", ROOT / "_build" / "hub-journey"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the JupyterHub journey creates Linux users: run it as root "
                                                  "(sudo env PATH=$PWD/.venv/bin:$PATH python -m pytest "
                                                  "tests/system/test_hub_journey.py)"),
]

# --- answers -----------------------------------------------------------------------------------------------------

WRONG_STATS = '''import numpy as np

def layer_norm_stats(x):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    return work.mean(-1).astype(x.dtype), work.var(-1, ddof=1).astype(x.dtype)
'''
# Wrong answers that make their own test cells pass inside the kernel: the check is replaced by a printout.
CHEAT_STATS = '''import numpy as np
import lnkit.checks

def layer_norm_stats(x):
    return np.zeros(x.shape[:-1]), np.ones(x.shape[:-1])

lnkit.checks.check_layer_norm_stats = lambda *a, **k: print("check_layer_norm_stats: all cases passed")
'''
CHEAT_LN = '''import numpy as np
import lnkit.checks

def layer_norm(x, gamma, beta, eps=1e-5):
    return x

lnkit.checks.check_layer_norm = lambda *a, **k: print("check_layer_norm: all cases passed")
'''
ANSWERS_01 = {
    "correct": {"layer_norm_stats": CORRECT["layer_norm_stats"].strip() + "\n",
                "layer_norm": CORRECT["layer_norm"].strip() + "\n"},
    "wrong": {"layer_norm_stats": WRONG_STATS, "layer_norm": CORRECT["layer_norm"].strip() + "\n"},
    "cheating": {"layer_norm_stats": CHEAT_STATS, "layer_norm": CHEAT_LN},
}
EXPECTED_01 = {"correct": 10.0, "wrong": 6.0, "cheating": 0.0}
WRITTEN_ANSWER = ("The final LayerNorm makes it: the residual stream grows like sqrt(L) and ln_f divides the "
                  "gradient by that size; without ln_f the slope turns positive.")
MANUAL_SCORE = 5  # of 6, given by the instructor in the formgrader


def _solution(assignment: str, grade_id: str) -> str:
    """The instructor's solution of one cell, without nbgrader's markers (a student who got it right)."""
    nb = json.loads((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id:
            src = "".join(cell["source"])
            return "\n".join(line for line in src.splitlines() if "### BEGIN SOLUTION" not in line
                             and "### END SOLUTION" not in line) + "\n"
    raise KeyError(grade_id)


# --- the machine: users, environment, course, hub ----------------------------------------------------------------

def _run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def _remove_accounts() -> None:
    for line in Path("/etc/passwd").read_text().splitlines():
        name = line.split(":")[0]
        if name.startswith(PREFIX + "-"):
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
            subprocess.run(["userdel", "-r", "-f", name], capture_output=True)
    for group in GROUPS.values():
        subprocess.run(["groupdel", group], capture_output=True)


def _make_accounts() -> dict[str, str]:
    """The run's users, with fresh passwords; homes made by `useradd -m` with the machine's usual umask."""
    _remove_accounts()
    for group in GROUPS.values():
        _run("groupadd", group)
    passwords = {}
    for name in [INSTRUCTOR, *STUDENTS]:
        group = GROUPS["instructors"] if name == INSTRUCTOR else GROUPS["students"]
        _run("useradd", "-m", "-s", "/bin/bash", "-G", group, name)
        passwords[name] = secrets.token_urlsafe(12)
    _run("chpasswd", input="".join(f"{n}:{p}\n" for n, p in passwords.items()))
    return passwords


def _copy_course(home: Path, owner: str) -> Path:
    """The instructor's course folder: the repository's course files, owned by the instructor."""
    course = home / "layernorm"
    course.mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", course)
    for folder in ("solutions", "exercises", "lnkit"):
        shutil.copytree(ROOT / folder, course / folder, ignore=shutil.ignore_patterns("__pycache__"))
    _run("chown", "-R", f"{owner}:{owner}", str(course))
    return course


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_proxy() -> Path:
    if not PROXY.exists():
        PROXY_DIR.mkdir(parents=True, exist_ok=True)
        _run("npm", "install", "--prefix", str(PROXY_DIR), "--no-fund", "--no-audit", "configurable-http-proxy",
             timeout=300)
    return PROXY


class Steps:
    """Times each step of the journey; writes them next to the screenshots."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.times: list[tuple[str, float]] = []

    def __call__(self, name: str):
        steps = self

        class _Step:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                seconds = time.perf_counter() - self.t0
                steps.times.append((name, seconds))
                print(f"  [{seconds:6.1f} s] {name}{'  (FAILED)' if exc[0] else ''}", flush=True)
                (steps.folder / "timings.json").write_text(json.dumps(steps.times, indent=1))

        return _Step()


@pytest.fixture(scope="module")
def hub():
    if shutil.which("jupyterhub") is None and not (Path(sys.prefix) / "bin" / "jupyterhub").exists():
        pytest.fail("jupyterhub is missing: `make test` installs lnkit[dev], which includes it")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium).")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    steps = Steps(SHOTS)
    # Not under pytest's own temporary folder: pytest makes /tmp/pytest-of-<user> private again at every start.
    base = Path(tempfile.mkdtemp(prefix="lnkit-hub-", dir="/var/tmp"))
    base.chmod(0o755)  # the users' servers run the Python and read the configuration below it
    state = base / "state"
    state.mkdir(mode=0o700)
    exchange = base / "exchange"
    exchange.mkdir()
    exchange.chmod(0o1777)
    log = open(base / "jupyterhub.log", "w")
    proc = None
    try:
        with steps("set up: users, Python for the users, course folder, proxy"):
            passwords = _make_accounts()
            python = user_python(base)
            config = readable(ROOT / "hub", base)  # the users' servers read hub/jupyter/ (JUPYTER_CONFIG_PATH)
            course = _copy_course(Path("/home") / INSTRUCTOR, INSTRUCTOR)
            proxy = _ensure_proxy()
        port = _free_port()
        env = dict(os.environ,
                   LNKIT_HUB_STATE=str(state), LNKIT_HUB_BIND=f"http://127.0.0.1:{port}",
                   LNKIT_HUB_INTERNAL=f"http://127.0.0.1:{_free_port()}",
                   LNKIT_HUB_PROXY_API=f"http://127.0.0.1:{_free_port()}",
                   LNKIT_HUB_PROXY=str(proxy), LNKIT_HUB_PYTHON=str(python),
                   LNKIT_HUB_PATH=f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
                   LNKIT_HUB_INSTRUCTORS=GROUPS["instructors"], LNKIT_HUB_STUDENTS=GROUPS["students"],
                   NBGRADER_EXCHANGE=str(exchange))
        with steps("start JupyterHub and its proxy"):
            proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config / "jupyterhub_config.py")],
                                    cwd=state, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(url + "/hub/health", timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail("JupyterHub did not start:\n" + (base / "jupyterhub.log").read_text()[-4000:])
                    time.sleep(0.5)
        yield dict(url=url, passwords=passwords, course=course, exchange=exchange, python=python, base=base,
                   steps=steps, log=base / "jupyterhub.log", config=config)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the hub stops the servers it spawned and its proxy
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        print("  step times:", json.dumps(steps.times))
        if not os.environ.get("LNKIT_HUB_KEEP"):
            _remove_accounts()
            shutil.rmtree(base, ignore_errors=True)


# --- the journey -------------------------------------------------------------------------------------------------

class Person:
    """One user in their own browser context, logged in through the hub's log-in page."""

    def __init__(self, browser, hub, name: str):
        self.name, self.hub = name, hub
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.context.set_default_timeout(60_000)
        self.page = self.context.new_page()
        self.base = f"{hub['url']}/user/{name}"

    def log_in(self) -> None:
        page = self.page
        page.goto(self.hub["url"] + "/hub/login")
        page.fill("#username_input", self.name)
        page.fill("#password_input", self.hub["passwords"][self.name])
        page.click("#login_submit")
        try:
            page.wait_for_url("**/lab**", timeout=180_000)  # the hub spawns this user's JupyterLab
        except Exception:  # noqa: BLE001 - keep a screenshot of what the user saw, then fail with the hub's log
            shot(page, f"log-in-failed-{self.name}")
            raise AssertionError(f"{self.name} could not log in; the hub's log ends with:\n"
                                 + self.hub["log"].read_text()[-3000:]) from None
        page.wait_for_selector(".lm-MenuBar-itemLabel:text-is('Nbgrader')", timeout=180_000)

    def open_menu(self) -> None:
        page = self.page
        for _ in range(3):
            page.click(".lm-MenuBar-itemLabel:text-is('Nbgrader')")
            try:
                page.locator(".lm-Menu").first.wait_for(timeout=5_000)
                return
            except Exception:  # noqa: BLE001 - the menu did not open: close whatever did, and try again
                page.keyboard.press("Escape")
        raise AssertionError(f"{self.name}: the Nbgrader menu does not open")

    def close_menu(self) -> None:
        page = self.page
        page.click(".lm-MenuBar-itemLabel:text-is('Nbgrader')")  # a second click on the open menu's title closes it
        try:
            page.locator(".lm-Menu").first.wait_for(state="detached", timeout=5_000)
        except Exception:  # noqa: BLE001 - a menu still open is closed with Escape
            page.keyboard.press("Escape")
            page.locator(".lm-Menu").first.wait_for(state="detached", timeout=5_000)

    def menu(self, item: str) -> None:
        self.open_menu()
        self.page.click(f".lm-Menu-itemLabel:text-is('{item}')")

    def menu_items(self) -> list[str]:
        self.open_menu()
        items = self.page.locator(".lm-Menu-itemLabel").all_inner_texts()
        self.close_menu()
        return [i.strip() for i in items if i.strip()]


def shot(page, label: str) -> None:
    n = len(list(SHOTS.glob("*.png"))) + 1
    page.screenshot(path=str(SHOTS / f"{n:02d}-{label}.png"))


# formgrader (instructor) -----------------------------------------------------------------------------------------

def formgrader_action(fg, assignment: str, column: str, label: str) -> str:
    """Click one of the Manage Assignments buttons of a row; return the log of the success dialog."""
    fg.click(f"tr:has(td.name a:text-is('{assignment}')) td.{column} a")
    dialog = fg.wait_for_selector("#success-modal.in, #error-modal.in", state="visible", timeout=600_000)
    fg.wait_for_timeout(400)  # the dialog's fade-in, for the screenshot
    text = dialog.inner_text()
    shot(fg, label)
    assert dialog.get_attribute("id") == "success-modal", f"formgrader {column} of {assignment} failed:\n{text}"
    fg.click(".modal.in .modal-footer button")
    fg.wait_for_selector("#success-modal, #error-modal", state="detached")
    return text


def autograde_in_formgrader(fg, base: str, assignment: str, student: str) -> str:
    fg.goto(f"{base}/formgrader/manage_submissions/{assignment}")
    fg.click(f"tr:has(td.student-id:text-is('{student}')) td.autograde a")
    dialog = fg.wait_for_selector("#success-modal.in, #error-modal.in", state="visible", timeout=600_000)
    fg.wait_for_timeout(400)  # the dialog's fade-in, for the screenshot
    text = dialog.inner_text()
    shot(fg, f"autograded-{assignment}-{student}")
    assert dialog.get_attribute("id") == "success-modal", f"autograding {student}'s {assignment} failed:\n{text}"
    fg.click(".modal.in .modal-footer button")
    return text


# assignment list (students) ----------------------------------------------------------------------------------------

def open_assignment_list(person: Person) -> None:
    person.menu("Assignment List")
    person.page.wait_for_selector("#released_assignments_list_loading", state="hidden")


def fetch(person: Person, assignment: str) -> None:
    page = person.page
    page.click(".lm-TabBar-tab:has-text('Assignments')")
    page.click(f"#released_assignments_list .list_item:has-text('{assignment}') button:text-is('Fetch')")
    page.wait_for_selector(f"#fetched_assignments_list a.assignment-notebooks-link:has-text('{assignment}')")


def open_notebook(person: Person, assignment: str) -> None:
    page = person.page
    page.click(".lm-TabBar-tab:has-text('Assignments')")
    panel = f"#nbgrader-layernorm-{assignment}"
    if not page.locator(panel).is_visible():
        page.click(f"#fetched_assignments_list a.assignment-notebooks-link:has-text('{assignment}')")
    page.click(f"{panel} .nested_list_item a:text-is('{assignment}')")
    page.wait_for_selector(f".lm-TabBar-tab.lm-mod-current:has-text('{assignment}.ipynb')")
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .cm-content").first.wait_for()


def write_code(person: Person, function: str, source: str) -> None:
    """Replace the solution cell that defines `function` with `source`, typed into its editor."""
    page = person.page
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) "
                        f".jp-CodeCell:has(.cm-content:has-text('def {function}('))")
    cell.first.wait_for()
    assert cell.count() == 1, f"no single solution cell for {function}"
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(source)
    page.keyboard.press("Escape")


def write_code_after(person: Person, marker: str, source: str) -> None:
    """Replace the solution cell whose text contains `marker` (a cell with no function of its own)."""
    page = person.page
    cell = page.locator(f".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell:has(.cm-content:has-text('{marker}'))")
    cell.first.wait_for()
    assert cell.count() == 1, f"no single cell containing {marker!r}"
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(source)
    page.keyboard.press("Escape")


def write_markdown(person: Person, marker: str, text: str) -> None:
    page = person.page
    cell = page.locator(f".jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell:has-text('{marker}')").last
    cell.dblclick()
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(text)
    page.keyboard.press("Shift+Enter")  # render it, as a student would
    page.keyboard.press("Escape")


def save(person: Person) -> None:
    """Save with the notebook toolbar's Save button, until the tab's unsaved mark goes."""
    page = person.page
    button = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar [data-command='docmanager:save']")
    for _ in range(3):
        button.click()
        try:
            page.wait_for_selector(".lm-TabBar-tab.lm-mod-current.jp-mod-dirty", state="detached", timeout=20_000)
            return
        except Exception:  # noqa: BLE001 - not saved yet: the loop saves again
            pass
    shot(page, f"save-failed-{person.name}")
    raise AssertionError(f"{person.name}'s notebook was not saved")


def validate(person: Person, assignment: str, label: str) -> str:
    page = person.page
    page.click(".lm-TabBar-tab:has-text('Assignments')")
    panel = f"#nbgrader-layernorm-{assignment}"
    if not page.locator(panel).is_visible():
        page.click(f"#fetched_assignments_list a.assignment-notebooks-link:has-text('{assignment}')")
    page.click(f"{panel} button:text-is('Validate')")
    dialog = page.wait_for_selector(".jp-Dialog", timeout=600_000)
    text = dialog.inner_text()
    shot(page, label)
    page.click(".jp-Dialog .jp-mod-accept")
    return text


def submit(person: Person, assignment: str) -> None:
    page = person.page
    page.click(".lm-TabBar-tab:has-text('Assignments')")
    page.click(f"#fetched_assignments_list .list_item:has(a.assignment-notebooks-link:has-text('{assignment}')) "
               f"button:text-is('Submit')")
    page.wait_for_selector(f"#submitted_assignments_list .list_item:has-text('{assignment}')")


def score_of(text: str) -> tuple[float, float]:
    m = re.search(r"Score:\s*([\d.]+)\s*/\s*([\d.]+)", text)
    assert m, f"no score in {text[:500]!r}"
    return float(m.group(1)), float(m.group(2))


def as_user(hub, user: str, *argv: str, cwd=None) -> subprocess.CompletedProcess:
    """Run a command as one of the hub's users, with the environment the hub gives them."""
    role = "instructor" if user == INSTRUCTOR else "student"
    env = {"PATH": f"{hub['python'].parent}:/usr/bin:/bin", "HOME": f"/home/{user}",
           "JUPYTER_CONFIG_PATH": f"{hub['config'] / 'jupyter' / role}:{hub['config'] / 'jupyter' / 'common'}",
           "NBGRADER_EXCHANGE": str(hub["exchange"])}
    return subprocess.run(["runuser", "-u", user, "--", "env", *[f"{k}={v}" for k, v in env.items()], *argv],
                          cwd=cwd or f"/home/{user}", capture_output=True, text=True)


def test_hub_journey(hub, browser):
    """Release, fetch, answer, validate, submit, collect, autograde, grade by hand, feedback, export: all through
    the hub's web pages, by the users who do them."""
    steps = hub["steps"]
    course = hub["course"]

    # --- the course folder, as `useradd -m` and a copy leave it: open to every student ----------------------------
    solution = course / "solutions" / "01-layernorm" / "01-layernorm.ipynb"
    student0 = next(iter(STUDENTS))
    assert as_user(hub, student0, "cat", str(solution)).returncode == 0  # the danger, shown
    with steps("instructor runs the course check and its fix"):
        found = as_user(hub, INSTRUCTOR, "python", "-m", "nbgrader_sandbox.course_check", str(course))
        assert found.returncode == 1 and f"chmod -R o-rwx {course / 'solutions'}" in found.stdout, found.stdout
        fixed = as_user(hub, INSTRUCTOR, "python", "-m", "nbgrader_sandbox.course_check", "--fix", str(course))
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    print("  course check before the fix:\n" + found.stdout)
    denied = as_user(hub, student0, "cat", str(solution))
    assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied

    # --- the instructor releases -------------------------------------------------------------------------------
    teacher = Person(browser, hub, INSTRUCTOR)
    with steps(f"instructor {INSTRUCTOR} logs in; the hub starts her JupyterLab"):
        teacher.log_in()
        shot(teacher.page, "instructor-lab")
    assert {"Formgrader", "Assignment List"} <= set(teacher.menu_items())
    # JupyterHub >= 4.1 forbids framing a user's server (Content-Security-Policy frame-ancestors 'none'), so the
    # Nbgrader > Formgrader tab of JupyterLab stays blank; nbgrader's documentation says to open the formgrader in a
    # browser tab of its own, which is what the instructor does (and the safe thing: framing is not re-enabled).
    with steps("instructor opens the formgrader in a browser tab of its own"):
        fg = teacher.context.new_page()
        fg.goto(f"{teacher.base}/formgrader")
        fg.wait_for_selector("tr:has(td.name a:text-is('01-layernorm')) td.release a")
        shot(fg, "formgrader")
    # the exchange comes from configuration: with it, the formgrader offers Release (without it, only "draft")
    for assignment in ("01-layernorm", "06-pre-post-ln"):
        with steps(f"instructor generates and releases {assignment}"):
            formgrader_action(fg, assignment, "assign", f"generated-{assignment}")
            log = formgrader_action(fg, assignment, "release", f"released-{assignment}")
            assert str(hub["exchange"] / "layernorm" / "outbound" / assignment) in log

    # --- the students fetch, answer, validate, submit ----------------------------------------------------------
    students = {}
    validations = {}
    for name, kind in STUDENTS.items():
        person = students[name] = Person(browser, hub, name)
        with steps(f"student {name} ({kind}) logs in"):
            person.log_in()
        items = person.menu_items()
        assert "Assignment List" in items and "Formgrader" not in items, items  # students: no formgrader
        r = person.page.request.get(f"{person.base}/formgrader")
        assert r.status == 404, f"{name} can reach the formgrader ({r.status})"
        with steps(f"{name} fetches 01-layernorm from the Assignment List"):
            open_assignment_list(person)
            fetch(person, "01-layernorm")
            shot(person.page, f"fetched-{name}")
        with steps(f"{name} writes the {kind} answers in 01-layernorm and saves"):
            open_notebook(person, "01-layernorm")
            for function, source in ANSWERS_01[kind].items():
                write_code(person, function, source)
            save(person)
            shot(person.page, f"answered-{name}")
        with steps(f"{name} validates 01-layernorm"):
            validations[name] = validate(person, "01-layernorm", f"validated-{name}")
        with steps(f"{name} submits 01-layernorm"):
            submit(person, "01-layernorm")
            shot(person.page, f"submitted-{name}")
    correct, wrong, cheat = list(STUDENTS)
    assert "passes all the tests" in validations[correct], validations[correct]
    assert "passes all the tests" not in validations[wrong], validations[wrong]
    # the patched check fools Validate, which runs in the student's own kernel; grading below is not fooled
    assert "passes all the tests" in validations[cheat], validations[cheat]

    ada = students[correct]
    with steps(f"{correct} fetches 06-pre-post-ln, answers its code and its written question, validates, submits"):
        fetch(ada, "06-pre-post-ln")
        open_notebook(ada, "06-pre-post-ln")
        write_code(ada, "pre_ln", _solution("06-pre-post-ln", "pre_ln"))
        write_code(ada, "post_ln", _solution("06-pre-post-ln", "post_ln"))
        write_code_after(ada, "depths = [2, 4, 8, 16, 32]", _solution("06-pre-post-ln", "measure"))
        write_markdown(ada, "Your answer", WRITTEN_ANSWER)
        save(ada)
        shot(ada.page, "answered-06")
        v06 = validate(ada, "06-pre-post-ln", "validated-06")
        submit(ada, "06-pre-post-ln")
    assert "passes all the tests" in v06, v06

    # --- the instructor collects, autogrades, grades by hand, returns feedback ---------------------------------
    fg.bring_to_front()
    fg.goto(f"{teacher.base}/formgrader")
    for assignment in ("01-layernorm", "06-pre-post-ln"):
        with steps(f"instructor collects {assignment}"):
            formgrader_action(fg, assignment, "collect", f"collected-{assignment}")
    with steps("instructor runs the course check again after collecting"):
        after = as_user(hub, INSTRUCTOR, "python", "-m", "nbgrader_sandbox.course_check", "--fix", str(course))
        assert after.returncode == 0, after.stdout + after.stderr
    print("  course check after collect:\n" + after.stdout)
    for name in STUDENTS:
        with steps(f"instructor autogrades {name}'s 01-layernorm in the formgrader"):
            autograde_in_formgrader(fg, teacher.base, "01-layernorm", name)
    with steps(f"instructor autogrades {correct}'s 06-pre-post-ln"):
        autograde_in_formgrader(fg, teacher.base, "06-pre-post-ln", correct)
    with steps("instructor grades the written answer of 06 by hand (Manual Grading)"):
        fg.goto(f"{teacher.base}/formgrader/gradebook/06-pre-post-ln/06-pre-post-ln")
        fg.click("td.name a.name-hidden")
        score = fg.locator("input.score#answer_gradient_norms")
        score.wait_for()
        fg.wait_for_load_state("networkidle")  # the page fills its inputs from the gradebook once loaded
        comment = fg.locator("textarea#answer_gradient_norms-comment")
        for _ in range(3):
            score.click()
            score.fill(str(MANUAL_SCORE))
            score.press("Tab")  # leaving the field saves it
            comment.click()
            comment.fill("Right: the final LayerNorm divides by the stream's size.")
            comment.press("Tab")
            fg.wait_for_timeout(1500)
            fg.reload()
            score.wait_for()
            fg.wait_for_load_state("networkidle")
            if score.input_value() == str(MANUAL_SCORE):
                break
        assert score.input_value() == str(MANUAL_SCORE), "the formgrader did not keep the hand-given score"
        shot(fg, "manual-grade-06")
    fg.goto(f"{teacher.base}/formgrader")
    for assignment in ("01-layernorm", "06-pre-post-ln"):
        with steps(f"instructor generates and releases the feedback of {assignment}"):
            formgrader_action(fg, assignment, "generate-feedback", f"feedback-generated-{assignment}")
            formgrader_action(fg, assignment, "release-feedback", f"feedback-released-{assignment}")

    # --- the students fetch their feedback and read it ---------------------------------------------------------
    feedback = {}
    for name, person in students.items():
        with steps(f"{name} fetches and opens the feedback"):
            page = person.page
            page.bring_to_front()
            open_assignment_list(person)
            row = page.locator("#submitted_assignments_list .list_item:has-text('01-layernorm')").first
            row.locator("button:text-is('Fetch Feedback')").click()
            page.wait_for_selector("#submitted_assignments_list a:has-text('view feedback')")
            if name == correct:  # her 06 too: the written answer, graded by hand
                row06 = page.locator("#submitted_assignments_list .list_item:has-text('06-pre-post-ln')").first
                row06.locator("button:text-is('Fetch Feedback')").click()
                page.locator("#submitted_assignments_list a:has-text('view feedback')").nth(1).wait_for()
            page.locator("#submitted_assignments_list a:has-text('view feedback')").first.click()
            shot(page, f"feedback-fetched-{name}")
            home = Path("/home") / name
            html = sorted(home.glob("01-layernorm/feedback/*/01-layernorm.html"))
            assert html, f"{name} has no fetched feedback"
            rel = html[-1].relative_to(home)
            page.goto(f"{person.base}/files/{rel}")
            feedback[name] = page.inner_text("body")
            shot(page, f"feedback-{name}")
    assert score_of(feedback[correct]) == (10.0, 10.0)
    assert score_of(feedback[wrong]) == (6.0, 10.0)
    assert "unbiased" in feedback[wrong].lower()
    assert score_of(feedback[cheat]) == (0.0, 10.0)
    with steps(f"{correct} reads the feedback of 06-pre-post-ln"):
        home = Path("/home") / correct
        html06 = sorted(home.glob("06-pre-post-ln/feedback/*/06-pre-post-ln.html"))
        assert html06, f"{correct} has no fetched feedback for 06"
        ada.page.goto(f"{ada.base}/files/{html06[-1].relative_to(home)}")
        feedback06 = ada.page.inner_text("body")
        shot(ada.page, "feedback-06")
    assert score_of(feedback06) == (4.0 + MANUAL_SCORE, 10.0)
    assert "the final LayerNorm divides by the stream's size" in feedback06  # the instructor's comment

    # --- the gradebook and the exported grades -----------------------------------------------------------------
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {name: gb.find_submission("01-layernorm", name).score for name in STUDENTS}
        s06 = gb.find_submission("06-pre-post-ln", correct)
        written = gb.find_grade("answer_gradient_norms", "06-pre-post-ln", "06-pre-post-ln", correct)
        assert written.manual_score == MANUAL_SCORE
        score06 = s06.score
    assert scores == {n: EXPECTED_01[k] for n, k in STUDENTS.items()}, scores
    assert score06 == 4 + MANUAL_SCORE, score06

    with steps("instructor exports the grades (nbgrader export, in her terminal)"):
        out = as_user(hub, INSTRUCTOR, "nbgrader", "export", "--to", "grades.csv", cwd=course)
        assert out.returncode == 0, out.stdout + out.stderr
    rows = list(csv.DictReader(io.StringIO((course / "grades.csv").read_text())))
    got = {(r["assignment"], r["student_id"]): float(r["score"]) for r in rows if r["timestamp"]}
    assert {k: v for k, v in got.items() if k[0] == "01-layernorm"} == \
        {("01-layernorm", n): EXPECTED_01[k] for n, k in STUDENTS.items()}
    assert got[("06-pre-post-ln", correct)] == 4 + MANUAL_SCORE
    print("  screenshots and timings in", SHOTS)
