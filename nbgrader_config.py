"""nbgrader's configuration: the repository root is the course directory.

Instructor sources (solutions, hidden tests, points) live in solutions/<assignment>/; the student versions that
`nbgrader generate_assignment <assignment>` makes from them go to exercises/<assignment>/ and are committed.
nbgrader's working folders (submitted/, autograded/, feedback/) and gradebook.db are git-ignored.

The exchange folder (release_assignment, fetch_assignment, submit, collect) is machine-specific: set it on the
command line (`--Exchange.root=/srv/nbgrader/exchange`, nbgrader's default) or in a nbgrader_config.py of your own
in ~/.jupyter.
"""

import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "layernorm"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
