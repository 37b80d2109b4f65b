"""Grading that can be trusted: nbgrader autograding with every check decided out of the student's kernel.

Not imported by ``import lnkit``; this subpackage is the only place that imports nbgrader. Its parts:

- :mod:`.sandbox`: the bubblewrap sandbox, one per student, that every process running student code starts in;
- :mod:`.intake`: nbgrader's pre/post convert hooks (only regular files taken in; files handed back to the course's
  owner) and the course's secret, from which each submission's hidden cases are keyed;
- :mod:`.wire`: the plain-data format (arrays as ``np.save`` bytes) between the two processes below;
- :mod:`.server`: the student server, running only the student's code in their sandbox, with no lnkit at all;
- :mod:`.remote` and :mod:`.checker`: the clean process that runs the instructor's test cells against proxies;
- :mod:`.kernel`: the kernel nbgrader executes, in the sandbox over Unix sockets, and GradingSandbox's settings;
- :mod:`.preprocessors`: nbgrader preprocessors that put the outside verdicts into the graded notebook, restore
  nbgrader metadata from the instructor's source, keep a dead kernel from stopping a submission, and keep the
  hidden tests out of the feedback;
- :mod:`.integrity` and :mod:`.similarity`: what looks like tampering or copying, per submission; :mod:`.parallel`
  and ``python -m nbgrader_sandbox autograde``: a whole class across all cores, ending with the grades CSV and the
  reports; :mod:`.course_check`: can other users read the course folder;
- :mod:`.collect`: ``nbgrader collect`` timing each submission by the exchange's inode change times, not by the
  student's ``timestamp.txt``.
"""
