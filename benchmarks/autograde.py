"""``python -m benchmarks.autograde [--students 40] [--jobs N]``: sequential nbgrader against the parallel command.

Generates a class of students for 01-layernorm (most correct, the others with the wrong answers of tests/corpus.py,
so some checks fail and diagnose), in two identical temporary course directories; autogrades one with plain
``nbgrader autograde 01-layernorm`` (nbgrader's one process, one student after another) and the other with
``python -m nbgrader_sandbox autograde 01-layernorm --jobs N``, both with the course's nbgrader_config.py (checks out of
the kernel on). Prints seconds per notebook for both and the ratio; writes benchmarks/results/autograde.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common

ASSIGNMENT = "01-layernorm"
BIN = Path(sys.executable).parent


def _env() -> dict:
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def make_course(folder: Path, students: int) -> list[str]:
    """A course directory with `students` submissions of 01-layernorm; returns the student ids."""
    sys.path.insert(0, str(common.ROOT / "tests"))
    from corpus import CORRECT, WRONG, write_submission  # the course's own answers, right and wrong

    shutil.copytree(common.ROOT / "solutions" / ASSIGNMENT, folder / "solutions" / ASSIGNMENT)
    shutil.copy(common.ROOT / "nbgrader_config.py", folder / "nbgrader_config.py")
    subprocess.run([str(BIN / "nbgrader"), "generate_assignment", ASSIGNMENT, "--force"], cwd=folder, env=_env(),
                   check=True, capture_output=True)
    wrong = [w for w in WRONG if w.function in ("layer_norm", "layer_norm_stats")]
    release = folder / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    ids = []
    for i in range(students):
        answers = {"layer_norm_stats": CORRECT["layer_norm_stats"], "layer_norm": CORRECT["layer_norm"]}
        if i % 4 == 3:  # every fourth student makes one of the known mistakes
            w = wrong[(i // 4) % len(wrong)]
            answers[w.function] = w.source
        student = f"student{i:03d}"
        write_submission(release, answers, folder / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        ids.append(student)
    return ids


def _scores(folder: Path) -> dict:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{folder / 'gradebook.db'}") as gb:
        return {s.student.id: s.score for s in gb.assignment_submissions(ASSIGNMENT)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.autograde", description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, default=40, help="class size (default 40)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="workers of the parallel command")
    p.add_argument("--out", type=Path, default=common.RESULTS / "autograde.json", help="where to write the JSON")
    args = p.parse_args(argv)
    if args.students < 1:
        p.error(f"--students must be at least 1; got {args.students}")
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1; got {args.jobs}")
    tmp = Path(tempfile.mkdtemp(prefix="lnkit-bench-autograde-"))
    try:
        seq, par = tmp / "sequential", tmp / "parallel"
        students = make_course(seq, args.students)
        make_course(par, args.students)
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "nbgrader"), "autograde", ASSIGNMENT], cwd=seq, env=_env(), check=True,
                       capture_output=True)
        sequential = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nbgrader_sandbox", "autograde", ASSIGNMENT, "--jobs", str(args.jobs),
                        "--no-progress"], cwd=par, env=_env(), check=True, capture_output=True)
        parallel = time.perf_counter() - t0
        same = _scores(seq) == _scores(par)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(students)
    result = {
        "machine": common.machine_info(),
        "assignment": ASSIGNMENT, "students": n, "jobs": args.jobs,
        "sequential_seconds_per_notebook": round(sequential / n, 3),
        "parallel_seconds_per_notebook": round(parallel / n, 3),
        "speedup": round(sequential / parallel, 2),
        "same_scores": same,
    }
    print(f"{n} students of {ASSIGNMENT}: nbgrader autograde {sequential / n:.2f} s per notebook; "
          f"python -m nbgrader_sandbox autograde --jobs {args.jobs} {parallel / n:.2f} s per notebook; "
          f"{sequential / parallel:.2f}x; same scores: {same}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
