"""Grading that can be trusted: nbgrader autograding with every check decided out of the student's kernel.

Not imported by ``import lnkit``; this subpackage is the only place that imports nbgrader. Its parts:

- :mod:`.wire`: the plain-data format (arrays as ``np.save`` bytes) between the two processes below;
- :mod:`.server`: the student server, running only the student's code, with limits, references refusing to run;
- :mod:`.remote` and :mod:`.checker`: the clean process that runs the instructor's test cells against proxies;
- :mod:`.preprocessors`: nbgrader preprocessors that put the outside verdicts into the graded notebook and keep a
  dead kernel from stopping a submission; :mod:`.kernel` and :mod:`.launch` run the kernel as an unprivileged user;
- :mod:`.integrity`: what looks like tampering, per submission; :mod:`.parallel` and ``python -m lnkit.grading
  autograde``: a whole class across all cores, ending with the grades CSV and the integrity report.
"""
