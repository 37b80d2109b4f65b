"""JupyterHub for the course: real Linux users, PAM log-in, one JupyterLab per user, nbgrader by role.

Run it as root from a folder every user can read (the servers read hub/jupyter/ below):

    jupyterhub -f hub/jupyterhub_config.py

Who is who comes from two Unix groups: members of the instructors' group get the formgrader (and every other nbgrader
extension); members of the students' group get only the Assignment List and Validate. Anyone else cannot log in.
Every user's nbgrader reads hub/jupyter/common/nbgrader_config.py (course id, exchange folder); an instructor's
also reads hub/jupyter/instructor/nbgrader_config.py, which finds the course folder and loads its nbgrader_config.py
(the grading settings), so the formgrader grades exactly as the command line does.

Each setting below can be changed through an environment variable of the hub (tests/system/test_hub_journey.py sets them
all to a throw-away folder); the defaults suit a course hub:

    LNKIT_HUB_STATE        /srv/jupyterhub               the hub's database, cookie secret, proxy pid
    LNKIT_HUB_BIND         http://127.0.0.1:8000         where the hub listens (put TLS in front of it)
    LNKIT_HUB_INTERNAL     http://127.0.0.1:8081         the hub's own address, behind the proxy
    LNKIT_HUB_PROXY_API    http://127.0.0.1:8001         the proxy's API
    LNKIT_HUB_PROXY        configurable-http-proxy       the proxy, from npm (npm install configurable-http-proxy)
    LNKIT_HUB_PYTHON       this interpreter              the Python whose JupyterLab and nbgrader the users run
    LNKIT_HUB_PATH         its bin/ folder, then the usual PATH for the users' servers (nbgrader runs `alembic`)
    LNKIT_HUB_INSTRUCTORS  layernorm-instructors         the instructors' group
    LNKIT_HUB_STUDENTS     layernorm-students            the students' group
    NBGRADER_EXCHANGE      /srv/nbgrader/exchange        the exchange (mode 1777); read by common/nbgrader_config.py
    LNKIT_COURSE_ROOT      ~/layernorm                   the instructor's course folder (a clone of the repository)
"""

import grp
import os
import pwd
import sys

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

HERE = os.path.dirname(os.path.abspath(__file__))
STATE = os.environ.get("LNKIT_HUB_STATE", "/srv/jupyterhub")
PYTHON = os.environ.get("LNKIT_HUB_PYTHON", sys.executable)
INSTRUCTORS = os.environ.get("LNKIT_HUB_INSTRUCTORS", "layernorm-instructors")
STUDENTS = os.environ.get("LNKIT_HUB_STUDENTS", "layernorm-students")
EXCHANGE = os.environ.get("NBGRADER_EXCHANGE", "/srv/nbgrader/exchange")
USER_PATH = os.environ.get("LNKIT_HUB_PATH", os.path.dirname(PYTHON) + ":/usr/local/bin:/usr/bin:/bin")

c.JupyterHub.bind_url = os.environ.get("LNKIT_HUB_BIND", "http://127.0.0.1:8000")
c.JupyterHub.hub_bind_url = os.environ.get("LNKIT_HUB_INTERNAL", "http://127.0.0.1:8081")  # the hub, for the proxy
c.ConfigurableHTTPProxy.api_url = os.environ.get("LNKIT_HUB_PROXY_API", "http://127.0.0.1:8001")
c.JupyterHub.db_url = "sqlite:///" + os.path.join(STATE, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(STATE, "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = os.path.join(STATE, "jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.command = [os.environ.get("LNKIT_HUB_PROXY", "configurable-http-proxy")]
c.JupyterHub.cleanup_servers = True

# Real Linux accounts, checked by PAM; only the course's two groups may log in.
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False
c.Authenticator.allowed_groups = {INSTRUCTORS, STUDENTS}
c.PAMAuthenticator.admin_groups = set()

# Each user's own JupyterLab, as that user, started in their home folder.
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [PYTHON, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120


def _in_group(username, group):
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        return False
    return username in entry.gr_mem or pwd.getpwnam(username).pw_gid == entry.gr_gid


def role_environment(spawner):
    """The environment of one user's server: where Jupyter finds its configuration, by role."""
    name = spawner.user.name
    role = "instructor" if _in_group(name, INSTRUCTORS) else "student"
    # JUPYTER_CONFIG_PATH comes before the environment's own folders: the student folder switches the formgrader off
    # (server and lab extension), the common folder names the course and the exchange for everyone.
    spawner.environment.update({
        "JUPYTER_CONFIG_PATH": os.pathsep.join([os.path.join(HERE, "jupyter", role),
                                                 os.path.join(HERE, "jupyter", "common")]),
        "NBGRADER_EXCHANGE": EXCHANGE,
        "PATH": USER_PATH,
        "LNKIT_COURSE_ROOT": os.environ.get("LNKIT_COURSE_ROOT", os.path.join(pwd.getpwnam(name).pw_dir,
                                                                                "layernorm")),
        # warnings an instructor cannot act on (see book/instructors.md)
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        "JUPYTER_PLATFORM_DIRS": "1",
    })


c.Spawner.pre_spawn_hook = role_environment
