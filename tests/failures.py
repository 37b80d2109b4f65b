"""The failure corpus of issue 5: submissions that try to fool, stop or slow autograding, each with its exact score.

Every case is a submission of 01-layernorm (10 points: test_layer_norm_stats 4, test_layer_norm 6) built from the
released notebook. `layer_norm_stats` is always answered correctly (the honest 4 points) unless a case says
otherwise; `layer_norm` carries the trick. Each case gives the exact score it must get, words its feedback must show,
and the words its integrity-report flags must contain (none: it must not be flagged at all).

Used by tests/system/test_failures.py, which grades them all with the real nbgrader workflow and the parallel command.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from corpus import CORRECT

from nbgrader_sandbox import landlock

ASSIGNMENT = "01-layernorm"

# A wrong layer_norm with a message of its own: the unbiased variance.
WRONG_LN = '''
import numpy as np

def layer_norm(x, gamma, beta, eps=1e-5):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    mean = work.mean(axis=-1, keepdims=True)
    var = work.var(axis=-1, keepdims=True, ddof=1)
    return ((work - mean) / np.sqrt(var + eps) * gamma + beta).astype(x.dtype)
'''
UNBIASED = "unbiased"


@dataclass
class Case:
    id: str
    issue_item: int  # the item of issue 5's list
    score: float
    feedback: list  # words the feedback page must contain (lower case compare)
    flags: list  # words each expected flag contains; [] means: not flagged at all
    layer_norm: str = CORRECT["layer_norm"]
    extra_cells: list = field(default_factory=list)  # (index to insert at, source): cells a student added
    edit: str = ""  # a structural change: see build()
    not_in_feedback: list = field(default_factory=list)
    # flags tolerated but not required: printing a million lines in the kernel may outlast its cell timeout on a slow
    # machine (the kernel only makes the feedback; the outside checks never see that output)
    may_flag: list = field(default_factory=list)


def _ln(body: str, head: str = "import numpy as np\n") -> str:
    return head + "\ndef layer_norm(x, gamma, beta, eps=1e-5):\n" + "\n".join(
        "    " + line for line in body.strip().splitlines()) + "\n"


# An environment variable of the grader's that must never reach student code (tests/system/test_failures.py sets it).
GRADER_TOKEN = "lnkit-grader-token-7f3a"

# A daemon, double-forked into its own session, that tries to kill every other process it can see for a minute
# (the classmates graded beside it, the grader): in its sandbox it sees none, and it ends with the sandbox.
DAEMON = """
import os, signal, time
server = os.getpid()  # spared: the attack is on the others
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        me = os.getpid()
        end = time.time() + 60
        while time.time() < end:
            for pid in os.listdir("/proc"):
                if pid.isdigit() and int(pid) not in (1, me, server):
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.2)
    os._exit(0)
"""


@functools.cache
def lookup_answer() -> str:
    """A layer_norm that answers every case lnkit's public seeds draw (visible and hidden) from a table, and zeros
    otherwise: what a student could precompute from the repository. The graded hidden cases come from the course's
    secret, so the visible check passes and the hidden one fails."""
    return _table_answer((None,))


def _table_answer(hidden_keys: tuple) -> str:
    """A layer_norm that answers, from a table, every visible case and the hidden cases drawn from each of
    hidden_keys (None: lnkit's public hidden seed), and zeros otherwise."""
    import base64
    import io

    import numpy as np

    from lnkit.checks import check_layer_norm, set_hidden_secret
    from lnkit.checks._engine import _ln64  # the checks' own float64 reference (lnkit.layer_norm is watched)

    table = {}

    def key(x, gamma, beta, eps):
        raw = x.tobytes() + np.asarray(gamma).tobytes() + np.asarray(beta).tobytes() + repr(float(eps)).encode()
        return raw.hex()[:96] + str(len(raw))

    def record(x, gamma, beta, eps=1e-5):
        table[key(x, gamma, beta, eps)] = out = _ln64(x, gamma, beta, eps)
        return out

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check_layer_norm(record)
            for hidden_key in hidden_keys:
                set_hidden_secret(hidden_key)
                check_layer_norm(record, hidden=True)
    finally:
        set_hidden_secret(None)
    buf = io.BytesIO()
    np.savez(buf, *table.values())
    data = base64.b64encode(buf.getvalue()).decode()
    return (f"import base64, io\nimport numpy as np\n_KEYS = {list(table)!r}\n"
            f"_VALUES = np.load(io.BytesIO(base64.b64decode({data!r})))\n\n"
            "def layer_norm(x, gamma, beta, eps=1e-5):\n"
            "    raw = x.tobytes() + np.asarray(gamma).tobytes() + np.asarray(beta).tobytes()"
            " + repr(float(eps)).encode()\n"
            "    short = raw.hex()[:96] + str(len(raw))\n"
            "    if short in _KEYS:\n"
            "        return _VALUES['arr_' + str(_KEYS.index(short))]\n"
            "    return np.zeros_like(x)\n")


# What a student who records the hidden inputs first submits: correct, and keeping every input it is called with.
RECORDER = CORRECT["layer_norm"] + '''
_correct, seen = layer_norm, []

def layer_norm(x, gamma, beta, eps=1e-5):
    seen.append((x, gamma, beta, eps))
    return _correct(x, gamma, beta, eps)
'''


def table_of_another_grading(course: Path, student: str, answers: dict) -> str:
    """The table a student would hold after recording the hidden cases of ``student``'s submission of ``answers``
    (grade_id -> source), graded in ``course``: its hidden cases are drawn from that submission's key, derived as
    the grader does (nbgrader_sandbox.intake.hidden_cases_key over the course's secret and the submitted folder)."""
    import tempfile

    from corpus import write_submission

    from nbgrader_sandbox.intake import course_secret, hidden_cases_key, submission_digest

    secret = course_secret(f"sqlite:///{course / 'gradebook.db'}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / student / ASSIGNMENT
        write_submission(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", answers,
                         folder / f"{ASSIGNMENT}.ipynb")
        key = hidden_cases_key(secret, student, ASSIGNMENT, ASSIGNMENT, submission_digest(str(folder)))
    return _table_answer((None, key))


def _sockets_folder_case(case_id: str, issue_item: int, guard_flags: list, attack: str) -> Case:
    """A kernel writing into its sockets' folder (the one host folder bound into its sandbox). Where Landlock exists
    every write there is refused (the notebook prints the refusal; nothing to flag); where it does not, the guard
    outside stops the kernel (guard_flags). The outside checks grade either way: 10 points."""
    code = CORRECT["layer_norm"] + '''
import os, time
try:
    from ipykernel.connect import get_connection_file
    folder = os.path.dirname(get_connection_file())
except ImportError:  # not the kernel (the student server, which has no ipykernel): nothing to attack from here
    folder = None
if folder:
    try:
''' + "".join(f"        {line}\n" for line in attack.strip().splitlines()) + '''\
    except OSError as e:
        print("sockets' folder write:", type(e).__name__)
'''
    if landlock.abi():
        return Case(case_id, issue_item, 10, ["check_layer_norm: 15 cases passed",
                                              "sockets' folder write: PermissionError"], [], layer_norm=code)
    return Case(case_id, issue_item, 10, ["check_layer_norm: 15 cases passed"], guard_flags, layer_norm=code)


def cases(course: Path) -> list[Case]:
    """The corpus; `course` is where it will be graded (case 10 reads from there by absolute path)."""
    return [
        Case("stderr-warnings", 1, 10, ["check_layer_norm: 15 cases passed"], [],
             layer_norm=CORRECT["layer_norm"] + '''
import sys, warnings
_correct = layer_norm

def layer_norm(x, gamma, beta, eps=1e-5):
    warnings.warn("a warning, on stderr")
    print("and a line on stderr", file=sys.stderr)
    return _correct(x, gamma, beta, eps)

print("stderr at the top level too", file=sys.stderr)
'''),
        Case("input-transformer", 2, 4, [UNBIASED], ["input transformer", "passed in the student's kernel"],
             layer_norm=WRONG_LN, extra_cells=[(-1, '''
ip = get_ipython()
ip.input_transformers_post.append(lambda lines: [])
''')]),
        Case("eq-always-true", 3, 4, ["not plain data"], ["not plain data"], layer_norm=_ln('''
class Anything:
    shape = x.shape
    dtype = x.dtype
    def __eq__(self, other): return True
    def __array__(self, *a, **k): return np.zeros(x.shape, x.dtype)
return Anything()
''')),
        Case("ndarray-subclass", 3, 4, ["subclass of numpy.ndarray"], ["not plain data"], layer_norm='''
import numpy as np

class Fake(np.ndarray):
    def __eq__(self, other): return np.ones(np.shape(other), bool)
    def __array_ufunc__(self, *args, **kwargs): return np.True_

def layer_norm(x, gamma, beta, eps=1e-5):
    return np.zeros_like(x).view(Fake)
'''),
        Case("monkeypatch-checks", 4, 4, [UNBIASED], ["lnkit.checks", "numpy comparison", "numpy.testing"],
             layer_norm=WRONG_LN + '''
import lnkit.checks
lnkit.checks.check_layer_norm = lambda *a, **k: print("check_layer_norm: 15 cases passed")
lnkit.checks._compare = lambda *a, **k: None
np.allclose = lambda *a, **k: True
np.testing.assert_allclose = lambda *a, **k: None
'''),
        Case("calls-lnkit", 5, 4, ["you called lnkit.layer_norm"], ["called the reference"],
             layer_norm=_ln("return lnkit.layer_norm(x, gamma, beta, eps)", "import lnkit\n")),
        Case("calls-torch", 5, 4, ["you called torch.nn.functional.layer_norm"], ["called the reference"],
             layer_norm=_ln('''
t = torch.from_numpy(np.ascontiguousarray(x))
return F.layer_norm(t, x.shape[-1:], torch.from_numpy(gamma), torch.from_numpy(beta), eps).numpy()
''', "import numpy as np\nimport torch\nimport torch.nn.functional as F\n")),
        Case("endless-loop", 6, 4, ["did not return within the time limit"], ["time limit"],
             layer_norm=_ln("while True:\n    pass")),
        Case("deep-recursion", 6, 4, ["recursionerror"], ["recursed without end"],
             layer_norm="def layer_norm(x, gamma, beta, eps=1e-5):\n    return layer_norm(x, gamma, beta, eps)\n"),
        Case("huge-allocation", 6, 4, ["ran out of memory"], ["memory limit"],
             layer_norm=_ln("big = np.ones(100 * 1024**3 // 8)\nreturn big[: x.size].reshape(x.shape)")),
        Case("os-exit", 7, 4, ["os._exit() or an equivalent"], ["ended its process"],
             layer_norm=_ln("os._exit(1)", "import os\n")),
        Case("system-exit", 7, 4, ["raised systemexit"], ["raised systemexit"],
             layer_norm=_ln("raise SystemExit(0)")),
        Case("million-lines", 8, 10, ["check_layer_norm: 15 cases passed"], [], may_flag=["(in the kernel)"],
             layer_norm=CORRECT["layer_norm"] + "\nfor i in range(1_000_000):\n    print(i)\n"),
        Case("test-cell-edited", 9, 4, [UNBIASED], ["test_layer_norm was edited"], layer_norm=WRONG_LN,
             edit="edit-test"),
        Case("test-cell-deleted", 9, 4, [UNBIASED], ["test_layer_norm was deleted"], layer_norm=WRONG_LN,
             edit="delete-test"),
        Case("test-cell-markdown", 9, 4, [UNBIASED], ["test_layer_norm was turned into markdown"],
             layer_norm=WRONG_LN, edit="markdown-test"),
        Case("solution-duplicated", 9, 4, [UNBIASED], ["layer_norm appears 2 times"], layer_norm=WRONG_LN,
             edit="duplicate-solution"),
        Case("notebook-renamed", 9, 0, [], ["01-layernorm.ipynb is missing", "renamed"], edit="rename"),
        Case("lnkit-shadow", 9, 4, [UNBIASED], ["shadows the package lnkit"], layer_norm=WRONG_LN,
             edit="shadow"),
        Case("reads-hidden-tests", 10, 10, ["check_layer_norm: 15 cases passed", "blocked: filenotfounderror"],
             ["names grading files"], not_in_feedback=["HIDDEN-TESTS-READ"], layer_norm=CORRECT["layer_norm"] + f'''
import glob
stolen = []
for path in [{str(course / "solutions" / ASSIGNMENT / (ASSIGNMENT + ".ipynb"))!r}, {str(course / "gradebook.db")!r},
             *glob.glob({str(course / "autograded" / "*" / ASSIGNMENT / "*.ipynb")!r}),
             *glob.glob("*.ipynb"), *glob.glob("../*.ipynb")]:  # the kernel's own folder, and the one above
    try:
        with open(path, "rb") as f:
            stolen.append(f.read())
        print("HIDDEN-TESTS-" + "READ", path)  # spelled apart: the feedback shows this source
    except OSError as e:
        print("blocked:", type(e).__name__)
_correct = layer_norm

def layer_norm(x, gamma, beta, eps=1e-5):
    if stolen:
        raise RuntimeError("HIDDEN-TESTS-" + "READ " + str(len(stolen)))
    return _correct(x, gamma, beta, eps)
'''),
        # --- issue 10: attacks on the sandbox, nothing to call, nothing to precompute, safe intake --------------
        Case("private-reference", 10, 4, ["you called lnkit.checks._ln64"], ["called the reference"],
             layer_norm=_ln("return _ln64(x, gamma, beta, eps)", "from lnkit.checks import _ln64\n")),
        Case("private-norms-block", 10, 4, ["you called lnkit.norms._centre_block"], ["called the reference"],
             layer_norm=_ln("return lnkit.norms._centre_block(x)", "import lnkit.norms\n")),
        Case("reference-copied-in-thread", 10, 4, ["layer_norm raised"], [], layer_norm=_ln('''
box = {}
def grab():
    ref = lnkit.layer_norm
    box["f"] = types.FunctionType(ref.__code__, ref.__globals__)
t = threading.Thread(target=grab)
t.start()
t.join()
return box["f"](x, gamma, beta, eps)
''', "import lnkit, threading, types\n")),
        Case("reference-in-subprocess", 10, 4, ["layer_norm raised"], [], layer_norm=_ln('''
np.save("x.npy", x); np.save("g.npy", gamma); np.save("b.npy", beta)
subprocess.run([sys.executable, "-c", "import numpy as np, lnkit; np.save('y.npy', lnkit.layer_norm("
                "np.load('x.npy'), np.load('g.npy'), np.load('b.npy'), " + repr(eps) + "))"], check=True)
return np.load("y.npy")
''', "import numpy as np, subprocess, sys\n")),
        Case("exec-reference-source", 10, 4, ["layer_norm raised"], [], layer_norm=_ln('''
namespace = {}
exec(inspect.getsource(lnkit.norms), namespace)
return namespace["layer_norm"](x, gamma, beta, eps)
''', "import inspect, lnkit.norms\n")),
        Case("hidden-cases-by-lookup", 10, 4, ["check_layer_norm: 15 cases passed", "layer_norm returns wrong"],
             ["passed in the student's kernel but failed outside it"],
             layer_norm=lookup_answer()),
        Case("daemon-kills-classmates", 10, 10, ["check_layer_norm: 15 cases passed"], ["ends or signals the process"],
             layer_norm=CORRECT["layer_norm"] + DAEMON),
        Case("fills-shared-memory", 10, 10, ["check_layer_norm: 15 cases passed", "shm: oserror"], [],
             not_in_feedback=["FILLED /"], layer_norm=CORRECT["layer_norm"] + '''
for where in ("/dev/shm/lnkit-fill", "/var/tmp/lnkit-fill"):
    try:
        with open(where, "wb") as f:
            for _ in range(256):
                f.write(b"x" * 1024**2)
        print("FILLED " + where)
    except OSError as e:
        print("shm:", type(e).__name__)
'''),
        Case("prints-environment", 10, 10, ["check_layer_norm: 15 cases passed"], [],
             not_in_feedback=[GRADER_TOKEN],
             layer_norm=CORRECT["layer_norm"] + "\nimport os\nprint(dict(os.environ))\n"),
        Case("symlinks-in-submission", 10, 10, ["check_layer_norm: 15 cases passed", "notes.txt: filenotfounderror"],
             ["solution.txt was refused: a symbolic link", "notes.txt was refused: a symbolic link"],
             not_in_feedback=["BEGIN SOLUTION", "ROOT-ONLY-MARKER"], edit="symlinks",
             layer_norm=CORRECT["layer_norm"] + '''
for name in ("solution.txt", "notes.txt"):
    try:
        print(open(name).read()[:3000])
    except OSError as e:
        print(name + ":", type(e).__name__)
'''),
        Case("links-in-a-read-only-folder", 10, 10, ["check_layer_norm: 15 cases passed",
                                                     "locked/notes.txt: filenotfounderror"],
             ["locked/notes.txt was refused: a symbolic link"], not_in_feedback=["ROOT-ONLY-MARKER"],
             edit="locked-folder", layer_norm=CORRECT["layer_norm"] + '''
try:
    print(open("locked/notes.txt").read()[:3000])
except OSError as e:
    print("locked/notes.txt:", type(e).__name__)
'''),
        _sockets_folder_case("fills-the-kernel-sockets-folder", 10, ["kernel was stopped", "sockets' folder"], '''
# in the kernel: the one host folder bound in holds its sockets; fill the host's disk through it
for i in range(64):
    with open(os.path.join(folder, f"fill-{i}"), "wb") as f:
        f.write(b"x" * 4 * 1024**2)
'''),
        Case("notebook-is-a-symlink", 10, 0, ["was a symbolic link"], ["01-layernorm.ipynb was refused"],
             not_in_feedback=["BEGIN HIDDEN TESTS", "hidden=True"], edit="notebook-symlink"),
        Case("notebook-is-a-fifo", 10, 0, ["was a fifo"], ["01-layernorm.ipynb was refused: a fifo"],
             edit="notebook-fifo"),
        Case("finds-course-from-lnkit", 10, 10, ["check_layer_norm: 15 cases passed", "course: not found"], [],
             not_in_feedback=["BEGIN SOLUTION"], layer_norm=CORRECT["layer_norm"] + '''
import os, lnkit
course = os.path.dirname(os.path.dirname(os.path.abspath(lnkit.__file__)))
try:
    print(open(os.path.join(course, "solutions", "01-layernorm", "01-layernorm.ipynb")).read())
except OSError:
    print("course: not found")
'''),
        Case("metadata-test-as-solution", 10, 4, [UNBIASED], ["'test_layer_norm': solution was true"],
             layer_norm=WRONG_LN, edit="meta-solution"),
        Case("metadata-points-raised", 10, 10, ["check_layer_norm: 15 cases passed"], ["points were 100"],
             edit="meta-points"),
        Case("metadata-unknown-grade-id", 10, 4, [UNBIASED], ["is not in the instructor's notebook",
                                                              "'test_layer_norm' was missing"],
             layer_norm=WRONG_LN, edit="meta-unknown-id", may_flag=["was deleted"]),
        Case("solution-and-test-deleted", 10, 4, ["not written yet"], ["'layer_norm' was missing",
                                                                       "'test_layer_norm' was missing"],
             edit="delete-solution-and-test", may_flag=["was deleted"]),
        Case("empty-notebook", 10, 0, ["not written yet"], ["was missing"], edit="empty", may_flag=["was deleted"]),
        # correct, but in the grading server (not in the kernel) it computes for 9 CPU seconds over its first 9 calls,
        # each under the 2 s call limit, and patches the server so that every reply says the call took no time: the
        # cell's 8 s limit is counted from outside the sandbox
        Case("reports-no-time", 18, 4, ["more than the time limit of 8 s per cell"],
             ["passed in the student's kernel but failed outside it"], layer_norm=CORRECT["layer_norm"] + '''
import sys, time
_server = sys.modules.get("server")
_correct, _spent = layer_norm, [0]

def layer_norm(x, gamma, beta, eps=1e-5):
    if _server is not None and _spent[0] < 9:
        _spent[0] += 1
        end = time.process_time() + 1.0
        while time.process_time() < end:
            pass
    return _correct(x, gamma, beta, eps)

if _server is not None:
    _real_call = _server.Server.call

    def _no_time(self, request, blobs):
        reply, out = _real_call(self, request, blobs)
        reply["seconds"] = 0.0
        return reply, out

    _server.Server.call = _no_time
    _server._run_delay = lambda: 0.0
'''),
        # ^ issue 18, class 2: what the student's process reports about itself
        # answers from a table of hidden cases recorded in another grading: a classmate's ("perfect"), or this
        # student's own earlier submission (the same notebook with a recorder). Each submission has its own hidden
        # cases, so the table answers the visible and the public hidden cases only
        Case("hidden-table-of-a-classmate", 18, 4, ["check_layer_norm: 15 cases passed", "layer_norm returns wrong",
                                                    "hidden inputs and answers are not shown"],
             ["passed in the student's kernel but failed outside it"], edit="table-of-classmate",
             not_in_feedback=["expected:", "got:"]),
        Case("hidden-table-of-an-earlier-submission", 18, 4, ["check_layer_norm: 15 cases passed",
                                                              "layer_norm returns wrong"],
             ["passed in the student's kernel but failed outside it"], edit="table-of-earlier-submission",
             not_in_feedback=["expected:", "got:"]),
        # an exception class named by 24 million characters (a 23 MB feedback page before): cut at 200, and said
        Case("huge-exception-type", 18, 4, ["layer_norm raised " + "A" * 200 + " ... (cut)"], [],
             not_in_feedback=["A" * 201], layer_norm=_ln("raise type('A' * 24_000_000, (Exception,), {})('why')")),
        # ^ issue 18, class 3: hidden cases per student and submission, capped text
        Case("sleeps-in-every-cell", 18, 10, ["check_layer_norm: 15 cases passed", "budget of 60 s"],
             ["budget of 60 s"], extra_cells=[(999, "import time\ntime.sleep(5)")] * 20),
        _sockets_folder_case("fills-a-subfolder-of-the-sockets-folder", 18, ["kernel was stopped", "sockets' folder"],
                             '''
# in the kernel: 320 MiB into a subfolder of its sockets' folder (the guard once looked at the top only)
folder = os.path.join(folder, "deep", "er")
os.makedirs(folder)
for i in range(80):
    with open(os.path.join(folder, f"fill-{i}"), "wb") as f:
        f.write(b"x" * 4 * 1024**2)
'''),
        _sockets_folder_case("locks-a-folder-in-the-sockets-folder", 18, ["folder in its sockets' folder unreadable"],
                             '''
# in the kernel: a folder nobody may enter, left behind on the host
folder = os.path.join(folder, "locked")
os.makedirs(os.path.join(folder, "inner"))
open(os.path.join(folder, "inner", "f"), "w").write("x")
os.chmod(os.path.join(folder, "inner"), 0)
os.chmod(folder, 0)
time.sleep(2)
'''),
        # 256 MiB of host disk no folder's size shows: files opened in the sockets' folder, unlinked, held open and
        # written. The guard outside cannot see them; only Landlock refuses them (without it: graded, unflagged)
        _sockets_folder_case("holds-unlinked-files-in-the-sockets-folder", 19, [], '''
held = []
for i in range(64):
    held.append(open(os.path.join(folder, f"held-{i}"), "wb"))
    os.unlink(held[-1].name)
    held[-1].write(b"x" * 4 * 1024**2)
    held[-1].flush()
'''),
        # ^ issue 18, class 4: limits per student, the notebook's budget, the sockets folder
        # its exception message draws a section flagging "perfect" in the Markdown report, and a formula in the CSV:
        # escaped, on its own line and in its own field; "perfect" stays unflagged (test_honest_students_...)
        Case("report-injection", 18, 4, ["raised systemexit"], ["raised systemexit"],
             layer_norm=_ln('raise SystemExit("\\n\\n## perfect\\n- **reference** (01-layernorm): called the '
                            'reference\\n=HYPERLINK(\\"http://evil.example\\")\\n")')),
        # a timestamp.txt in the submitted folder, as a stock nbgrader collect leaves the student's own: flagged
        Case("timestamp-claimed", 18, 10, ["check_layer_norm: 15 cases passed"],
             ["the submission time is the student's own timestamp.txt"], edit="timestamp-claimed"),
        # ^ issue 18, classes 5 and 6: reports, the worker protocol, submission times
    ]


def build(course: Path, case: Case) -> None:
    """Write case's submission to course/submitted/<case.id>/01-layernorm/, from the release."""
    folder = course / "submitted" / case.id / ASSIGNMENT
    folder.mkdir(parents=True)
    if case.edit == "table-of-classmate":  # "perfect" submits CORRECT (see tests/system/test_failures.py)
        case.layer_norm = table_of_another_grading(course, "perfect", CORRECT)
    elif case.edit == "table-of-earlier-submission":
        case.layer_norm = table_of_another_grading(course, case.id, {**CORRECT, "layer_norm": RECORDER})
    nb = nbformat.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    index = {c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(nb.cells)}
    nb.cells[index["layer_norm_stats"]].source = CORRECT["layer_norm_stats"]
    nb.cells[index["layer_norm"]].source = case.layer_norm
    test = nb.cells[index["test_layer_norm"]]
    for at, source in case.extra_cells:
        position = index["test_layer_norm_stats"] if at == -1 else at
        nb.cells.insert(position, nbformat.v4.new_code_cell(source))
    if case.edit == "edit-test":
        test.source = 'print("check_layer_norm: 15 cases passed")'
    elif case.edit == "delete-test":
        nb.cells.remove(test)
    elif case.edit == "markdown-test":
        test.cell_type = "markdown"
        test.pop("outputs", None)
        test.pop("execution_count", None)
    elif case.edit == "duplicate-solution":
        # the wrong answer first, then a copy of the cell (same nbgrader metadata) with the release's stub
        copy = nbformat.from_dict(json.loads(json.dumps(nb.cells[index["layer_norm"]])))
        copy.source = case.layer_norm
        copy["id"] = "layer_norm-copy"
        nb.cells.insert(index["layer_norm"], copy)
    elif case.edit == "meta-solution":
        test.metadata.nbgrader["solution"] = True
    elif case.edit == "meta-points":
        test.metadata.nbgrader["points"] = 100
        nb.cells[index["test_layer_norm_stats"]].metadata.nbgrader["points"] = 100
    elif case.edit == "meta-unknown-id":
        test.metadata.nbgrader["grade_id"] = "my_own_cell"
    elif case.edit == "delete-solution-and-test":
        solution = nb.cells[index["layer_norm"]]
        nb.cells.remove(test)
        nb.cells.remove(solution)
    elif case.edit == "empty":
        nb.cells = []
    nbformat.write(nb, folder / f"{ASSIGNMENT}.ipynb")
    if case.edit == "rename":
        (folder / f"{ASSIGNMENT}.ipynb").rename(folder / f"{ASSIGNMENT}-mine.ipynb")
    elif case.edit == "notebook-symlink":
        (folder / f"{ASSIGNMENT}.ipynb").unlink()
        (folder / f"{ASSIGNMENT}.ipynb").symlink_to(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    elif case.edit == "notebook-fifo":
        (folder / f"{ASSIGNMENT}.ipynb").unlink()
        os.mkfifo(folder / f"{ASSIGNMENT}.ipynb")
    elif case.edit == "symlinks":
        (folder / "solution.txt").symlink_to(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        (folder / "notes.txt").symlink_to(course / "root-only.txt")
    elif case.edit == "locked-folder":
        # nbgrader collect keeps modes: without write permission on the folder, an instructor without root could
        # not move the link aside, and nbgrader would copy what it points to
        (folder / "locked").mkdir()
        (folder / "locked" / "notes.txt").symlink_to(course / "root-only.txt")
        (folder / "locked").chmod(0o500)
    elif case.edit == "timestamp-claimed":
        (folder / "timestamp.txt").write_text("2000-01-01 00:00:00.000000 UTC")
    elif case.edit == "shadow":
        (folder / "lnkit.py").write_text(
            "class _Checks:\n"
            "    def __getattr__(self, name):\n"
            "        return lambda *a, **k: print(name + ': 15 cases passed')\n"
            "checks = _Checks()\n")
