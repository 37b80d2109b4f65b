"""``python -m nbgrader_sandbox autograde ASSIGNMENT [--jobs N]``: autograde every submitted student, in parallel.

Run it from the course directory (the one with nbgrader_config.py), with the environment's bin/ first on PATH as
for any nbgrader command. It prints where the grades CSV and the integrity report were written, and a summary.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nbgrader_sandbox", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("autograde", help="autograde every submission of an assignment across all cores")
    a.add_argument("assignment")
    a.add_argument("--jobs", "-j", type=int, default=None, help="worker processes (default: one per core)")
    a.add_argument("--course", default=".", help="the course directory (default: the current one)")
    a.add_argument("--grades", help="where to write the grades CSV (default: COURSE/grades.csv)")
    a.add_argument("--report", help="the integrity report, Markdown; a CSV goes beside it "
                                    "(default: COURSE/autograded/integrity-ASSIGNMENT.md)")
    a.add_argument("--feedback", action="store_true", help="also run nbgrader generate_feedback")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        p.error(f"--jobs must be at least 1; got {args.jobs}")
    from .parallel import autograde_class

    try:
        out = autograde_class(args.course, args.assignment, jobs=args.jobs, progress=not args.no_progress,
                              grades_csv=args.grades, report=args.report, feedback=args.feedback)
    except ValueError as e:
        p.error(str(e))
    except RuntimeError as e:  # grading refused (no sandbox) or could not check its own results
        print(f"python -m nbgrader_sandbox: {e}", file=sys.stderr)
        return 2
    from .integrity import one_line  # student ids are folder names: no newline or terminal escape reaches the screen

    failed = [one_line(s, 120) for s, r in out.results.items() if not r.get("success")]
    flagged = [one_line(s, 120) for s in sorted({f.student for f in out.flags})]
    print(f"autograded {len(out.students)} submissions of {args.assignment} in {out.seconds:.1f} s "
          f"({len(failed)} with nbgrader errors, {len(out.mismatches)} gradebook mismatches)")
    print(f"grades: {out.grades}")
    print(f"integrity report: {out.report} ({len(flagged)} submissions flagged"
          + (f": {', '.join(flagged[:20])}{' ...' if len(flagged) > 20 else ''})" if flagged else ")"))
    for m in out.mismatches:
        print(f"MISMATCH {one_line(m)}", file=sys.stderr)
    for student in failed:  # as nbgrader autograde does: the others are graded, and the status says not all were
        print(f"NBGRADER ERROR {student}: see the integrity report", file=sys.stderr)
    return 1 if out.mismatches or failed else 0


if __name__ == "__main__":
    sys.exit(main())
