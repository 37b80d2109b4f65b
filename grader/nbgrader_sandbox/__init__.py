"""nbgrader-sandbox: nbgrader autograding with student code in a sandbox and every check decided out of its kernel.

Any nbgrader course can use it (grader/README.md): ``configure(c, course=...)`` in its nbgrader_config.py. It knows
nothing of the course it grades; a course that has check functions of its own describes them in one module
(:mod:`.course`). Its parts:

- :mod:`.config`: ``configure(c)``, the grader's places in nbgrader's preprocessor lists, hooks and exporters;
- :mod:`.settings`: ``c.GradingSandbox``, every limit with its one default; :mod:`.layout`: the course's folders, as
  nbgrader's CourseDirectory sets them; :mod:`.course`: what a course registers (the one seam);
- :mod:`.sandbox` (and :mod:`.supervisor`): the bubblewrap sandbox, one per student, that every process running
  student code starts in;
- :mod:`.intake`: nbgrader's pre/post convert hooks (only regular files taken in; files handed back to the course's
  owner) and the course's secret, from which each submission's hidden cases are keyed;
- :mod:`.wire`: the plain-data format (arrays as ``np.save`` bytes) between the two processes below;
- :mod:`.server`: the student server, running only the student's code in their sandbox, with nothing of the course;
- :mod:`.remote`, :mod:`.proxy` and :mod:`.checker`: the clean process that runs the instructor's test cells against
  proxies of the student's functions (:mod:`.proxy` is what a course's checks see);
- :mod:`.kernel`: the kernel nbgrader executes, in the sandbox over Unix sockets;
- :mod:`.preprocessors`: nbgrader preprocessors that put the outside verdicts into the graded notebook, restore
  nbgrader metadata from the instructor's source, keep a dead kernel from stopping a submission, and keep the
  hidden tests out of the feedback; :mod:`.render`: pages that show student content inert;
- :mod:`.integrity` and :mod:`.similarity` (with :mod:`.notebook`, their notebook reader): what looks like tampering
  or copying, per submission; :mod:`.parallel` and :mod:`.worker`: ``nbgrader-sandbox autograde``, a whole class
  across all cores, ending with the grades CSV and the reports; :mod:`.course_check`: can other users read the course
  folder;
- :mod:`.collect`: ``nbgrader collect`` timing each submission by the exchange's inode change times, not by the
  student's ``timestamp.txt``.

Only this package imports nbgrader; the course's own package never imports it.
"""
