"""An instructor's nbgrader on the hub: the course folder, and its own nbgrader_config.py (grading settings).

The formgrader reads the configuration of the folder the server started in (the home folder) and of
JUPYTER_CONFIG_PATH, never the course folder's own file: loading it here makes the formgrader's Release, Collect,
Autograde and Generate Feedback use exactly the settings `nbgrader` uses on the command line in the course folder.
"""

import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

root = os.environ.get("LNKIT_COURSE_ROOT", os.path.expanduser("~/layernorm"))
c.CourseDirectory.root = root
if os.path.exists(os.path.join(root, "nbgrader_config.py")):
    load_subconfig("nbgrader_config.py", path=root)  # noqa: F821 - provided by traitlets' config loader
