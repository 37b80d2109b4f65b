"""nbgrader settings every user of the hub loads, students and instructors alike: the course and the exchange.

On a JupyterHub, this file is what /etc/jupyter/nbgrader_config.py would be (hub/jupyterhub_config.py puts this
folder on every user's JUPYTER_CONFIG_PATH instead, so nothing outside the repository is written). The exchange
folder must exist, owned by root, mode 1777 (`sudo install -d -m 1777 /srv/nbgrader/exchange`); nbgrader's own
default, when nothing sets it, is /usr/local/share/nbgrader/exchange.
"""

import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "layernorm"
c.Exchange.root = os.environ.get("NBGRADER_EXCHANGE", "/srv/nbgrader/exchange")
