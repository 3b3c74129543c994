"""JupyterHub for one ftlab class on one machine (deploy/README.md: "One machine").

Students log in with their machine accounts (PAM), each server runs under systemd with
a memory and CPU cap, assignments travel through nbgrader's exchange folder, and the
instructors grade in a shared course server (the ``ftlab`` service) that runs as the
``grader-ftlab`` account, whose home holds the course (this repository) and the gradebook.
Students never see that home: their environment has the ``ftlab`` wheel and the lessons only.

Edit ROSTER (or load it from a file) and run: ``jupyterhub -f deploy/jupyterhub_config.py``.
"""

import os
import pwd
import shutil

c = get_config()  # noqa: F821 -- injected by JupyterHub's config loader

COURSE = "ftlab"
GRADER = f"grader-{COURSE}"  # a machine account; its home is the course root (git clone of this repository)
LESSONS = os.environ.get("FTLAB_LESSONS", "/srv/ftlab/lessons")  # from deploy/build_student_bundle.sh
EXCHANGE = "/srv/nbgrader/exchange"  # world-writable with the sticky bit: `install -d -m 1777 /srv/nbgrader/exchange`
ROSTER = {
    "instructors": os.environ.get("FTLAB_INSTRUCTORS", "instructor").split(),
    "students": os.environ.get("FTLAB_STUDENTS", "student1 student2").split(),
}

# --- who may log in ------------------------------------------------------------------
c.JupyterHub.bind_url = os.environ.get("FTLAB_HUB_URL", "http://:8000")
c.Authenticator.allowed_users = set(ROSTER["instructors"]) | set(ROSTER["students"])
c.Authenticator.admin_users = set(ROSTER["instructors"])

# --- each student's server: systemd units with limits ---------------------------------
# pip install jupyterhub-systemdspawner; LocalProcessSpawner would run servers without limits.
c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
c.SystemdSpawner.mem_limit = os.environ.get("FTLAB_MEM_LIMIT", "6G")
c.SystemdSpawner.cpu_limit = float(os.environ.get("FTLAB_CPU_LIMIT", "2"))
c.SystemdSpawner.isolate_tmp = True
c.SystemdSpawner.isolate_devices = True
c.SystemdSpawner.disable_user_sudo = True
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.environment = {"FTLAB_COURSE": COURSE, "HF_HUB_OFFLINE": "1"}


def copy_lessons(spawner) -> None:
    """First start: each user gets their own copy of the lessons, so their edits stay theirs.

    Runs in the hub (root) before the server starts; a later start keeps what is there.
    """
    account = pwd.getpwnam(spawner.user.name)
    target = os.path.join(account.pw_dir, "lessons")
    if not os.path.isdir(LESSONS) or os.path.exists(target):
        return
    shutil.copytree(LESSONS, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for folder, _, files in os.walk(target):
        for path in [folder, *(os.path.join(folder, f) for f in files)]:
            os.chown(path, account.pw_uid, account.pw_gid)


c.Spawner.pre_spawn_hook = copy_lessons

# --- nbgrader: course groups, roles and the instructors' course server ------------------
c.JupyterHub.load_groups = {
    f"nbgrader-{COURSE}": {"users": ROSTER["students"]},  # the Assignments tab shows this course
    f"formgrade-{COURSE}": {"users": [*ROSTER["instructors"], GRADER]},  # the Formgrader tab
}
c.JupyterHub.load_roles = [
    {"name": "server", "scopes": ["inherit"]},  # servers ask the hub which course groups their user is in
    {
        "name": f"formgrade-{COURSE}",
        "groups": [f"formgrade-{COURSE}"],
        "scopes": [f"access:services!service={COURSE}"],
    },
    {"name": f"service-{COURSE}", "services": [COURSE], "scopes": ["list:users", "read:users", "read:groups"]},
]
c.JupyterHub.services = [
    {
        "name": COURSE,
        "url": "http://127.0.0.1:9999",
        "command": ["jupyterhub-singleuser", "--port=9999", "--ServerApp.root_dir=~"],
        "user": GRADER,
        "cwd": f"/home/{GRADER}",
        "environment": {"JUPYTERHUB_DEFAULT_URL": "/lab"},
        "oauth_no_confirm": True,
    },
    {
        # Graded on submit (`ftlab serve`, docs/guides/instructors.md: "Graded on submit"): polls the exchange's inbound folder,
        # grades each submission of the assignments grading_service.toml turns on, sandboxed, and releases
        # its feedback to that student. No URL: nobody talks to it; the hub starts it, and restarts it if it
        # dies (what it was grading is graded again: its queue is on disk). Its page for the instructors is a
        # file in the course, served by the course service above: /services/ftlab/files/reports/index.html
        # (the queue, the last failures, each assignment's class report).
        "name": f"{COURSE}-grading",
        "command": [
            "ftlab",
            "serve",
            f"--course=/home/{GRADER}",
            f"--jobs={os.environ.get('FTLAB_GRADING_JOBS', '2')}",
        ],
        "user": GRADER,
        "cwd": f"/home/{GRADER}",
        "environment": {"OMP_NUM_THREADS": "1"},
    },
]

# Every user's nbgrader (students' and instructors') finds the exchange through
# /etc/jupyter/nbgrader_config.py: deploy/nbgrader_global_config.py, installed there.
