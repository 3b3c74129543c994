"""A class on a real JupyterHub: deploy/jupyterhub_config.py, served on 127.0.0.1, end to end.

The test starts JupyterHub (its configurable-http-proxy from npm) with the repository's
hub configuration, changing only what a test machine must: the test authenticator
(one shared password) instead of PAM, JupyterHub's local-process spawner instead of
systemd, private ports and a private exchange. The people are real machine accounts, as
on a class server, so nbgrader's identity checks (who submitted what) are the real ones:

- the instructor generates and releases an assignment through the course service's
  formgrader API (students are refused there);
- two students fetch it, edit it and submit it through the nbgrader extension of their
  own servers, behind the hub; neither can read the other's work;
- the instructor collects through the service, and grades with ``ftlab grade`` in the
  course account, sandboxed: a full and a partial answer get full and partial marks;
- a headless Chromium (Debian's, driven by Playwright) logs in as a student, opens
  lesson 2 (the hub copied the lessons into the student's home at the first start) in JupyterLab, runs it down to the parameter-count explorer and moves its slider.

It needs root (it creates the accounts and the hub switches to them), bubblewrap,
configurable-http-proxy and chromium: ``make system-deps`` installs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPLOY = ROOT / "deploy"
COURSE_ID = "ftlab"
ASSIGNMENT = "ps1_parameters"
INSTRUCTOR, GRADER = "fth-ann", "fth-grader"
STUDENTS = ("fth-alice", "fth-bob")
NOTEBOOK = next((ROOT / "solutions" / ASSIGNMENT).glob("*.ipynb")).name
LESSON = "02_feature_extraction_vs_fine_tuning.ipynb"
FAILURE_SCREENSHOT = Path(tempfile.gettempdir()) / "ftlab-hub-browser-failure.png"
CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's binary (/usr/bin/chromium is a shell wrapper)
INSTALL = "install the system tools the tests need with `make system-deps`"
BROWSER_ARGS = [  # a CI container: no GPU, no setuid sandbox, a small /dev/shm, no network chatter
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
    "--mute-audio",
]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _requirements() -> None:
    """A missing tool fails the test, saying how to install it (CI installs them all)."""
    if os.geteuid() != 0:
        pytest.fail("the JupyterHub test creates machine accounts and spawns servers as them: run it as root (CI does)")
    for tool, how in [
        ("configurable-http-proxy", "npm install -g configurable-http-proxy"),
        ("bwrap", "apt-get install -y bubblewrap"),
        ("useradd", "apt-get install -y passwd"),
    ]:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: {how} ({INSTALL})")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium ({INSTALL})")
    for script in ("jupyterhub", "jupyterhub-singleuser"):
        if not (BIN / script).exists():
            pytest.fail(f"{BIN / script} is missing: pip install -e '.[dev]' installs jupyterhub")


# --------------------------------------------------------------------------- accounts


def _remove_account(name: str) -> None:
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    for proc in Path("/proc").iterdir():  # whatever the account still runs
        with contextlib.suppress(OSError, ValueError):
            if proc.name.isdigit() and proc.stat().st_uid == uid:
                os.kill(int(proc.name), signal.SIGKILL)
    subprocess.run(["userdel", name], capture_output=True)


def _add_account(name: str, home: Path) -> None:
    _remove_account(name)  # left over from an interrupted run
    subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/bash", "--user-group", name],
        check=True,
        capture_output=True,
    )
    home.mkdir(parents=True, exist_ok=True)
    _chown_tree(home, name)
    home.chmod(0o700)  # as on a class server: nobody reads another's home


def _chown_tree(path: Path, name: str) -> None:
    entry = pwd.getpwnam(name)
    for p in [path, *path.rglob("*")]:
        os.chown(p, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


@contextlib.contextmanager
def _reachable_by_all(*paths: Path):
    """Let every account traverse (never list) the folders above ``paths``, for the test's duration.

    The accounts run this environment's Python, which on a test machine may live in root's home
    (pyenv's /root/.pyenv): each ancestor folder lacking o+x gets it, and its mode is put back after.
    """
    changed: dict[Path, int] = {}
    try:
        for path in paths:
            for folder in [*reversed(path.parents), path]:
                mode = folder.stat().st_mode
                if folder.is_dir() and not mode & stat.S_IXOTH and folder not in changed:
                    changed[folder] = stat.S_IMODE(mode)
                    folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        yield
    finally:
        for folder, mode in changed.items():
            folder.chmod(mode)


# --------------------------------------------------------------------------- the hub


@dataclass
class Hub:
    url: str
    admin_token: str
    password: str
    base: Path
    course: Path
    exchange: Path
    homes: dict[str, Path]
    log: Path

    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=120, **kw)

    def token_for(self, user: str) -> str:
        r = self.api("POST", f"/hub/api/users/{user}/tokens", json={"note": "e2e", "expires_in": 3600})
        assert r.status_code in (200, 201), r.text
        return r.json()["token"]

    def start_server(self, user: str) -> None:
        r = self.api("POST", f"/hub/api/users/{user}/server")
        assert r.status_code in (201, 202, 400), r.text  # 400: already running
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            server = self.api("GET", f"/hub/api/users/{user}").json().get("servers", {}).get("")
            if server and server.get("ready"):
                return
            time.sleep(1)
        raise AssertionError(f"{user}'s server did not start in 180 s:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


def _write_configs(base: Path, course: Path, exchange: Path, admin_token: str, password: str, ports: dict) -> Path:
    etc = base / "etc-jupyter"
    etc.mkdir()
    # Every user's nbgrader reads the shared settings of deploy/ (on a server: /etc/jupyter), here
    # with the test's exchange.
    (etc / "nbgrader_config.py").write_text(
        f"c = get_config()\nload_subconfig({str(DEPLOY / 'nbgrader_global_config.py')!r})\n"
        f"c.Exchange.root = {str(exchange)!r}\n"
    )
    env = {"JUPYTER_CONFIG_PATH": str(etc), "PATH": f"{BIN}:/usr/bin:/bin", "FTLAB_FAST": "1", "OMP_NUM_THREADS": "1"}
    config = base / "jupyterhub_config.py"
    config.write_text(
        f"""
c = get_config()
load_subconfig({str(DEPLOY / "jupyterhub_config.py")!r})  # the configuration an instructor deploys

# What a test machine changes: who logs in, how servers start, where things live.
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.JupyterHub.spawner_class = "localprocess"  # switches to the student's account, like systemd's spawner
c.Spawner.cmd = [{str(BIN / "jupyterhub-singleuser")!r}]
c.Spawner.environment = {{**c.Spawner.environment, **{env!r}}}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.JupyterHub.bind_url = "http://127.0.0.1:{ports["hub"]}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{ports["internal"]}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{ports["proxy_api"]}"
c.JupyterHub.db_url = "sqlite:///{base / "hub.sqlite"}"
c.JupyterHub.cookie_secret_file = "{base / "cookie_secret"}"
c.ConfigurableHTTPProxy.pid_file = "{base / "proxy.pid"}"

service = c.JupyterHub.services[0]
grader = service["user"]
service.update(
    user={GRADER!r},
    cwd={str(course)!r},
    url="http://127.0.0.1:{ports["service"]}",
    command=[{str(BIN / "jupyterhub-singleuser")!r}, "--port={ports["service"]}", "--ServerApp.root_dir={course}"],
    environment={{**service.get("environment", {{}}), **{env!r}}},
)
grading = c.JupyterHub.services[1]  # ftlab serve: graded on submit, as the course account
grading.update(
    user={GRADER!r},
    cwd={str(course)!r},
    command=[{str(BIN / "ftlab")!r}, "serve", "--course={course}", "--jobs=2", "--poll=1"],
    environment={{**grading.get("environment", {{}}), **{env!r}, "HOME": {str(course)!r}}},
)
c.Spawner.poll_interval = 5  # the hub notices a service that died (and restarts it) within seconds
formgrade = c.JupyterHub.load_groups["formgrade-{COURSE_ID}"]["users"]
formgrade[formgrade.index(grader)] = {GRADER!r}

# The test itself drives the hub's REST API with an admin service token.
c.JupyterHub.services.append({{"name": "e2e", "api_token": {admin_token!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "e2e", "services": ["e2e"], "scopes": ["admin:users", "admin:servers", "tokens", "read:users"]}}
)
"""
    )
    return config


@pytest.fixture(scope="module")
def hub():
    _requirements()
    base = Path(tempfile.mkdtemp(prefix="ftlab-hub-", dir="/tmp"))
    base.chmod(0o755)  # the accounts reach their homes through it
    with contextlib.ExitStack() as cleanup:  # undone in reverse: hub, accounts, folder modes, files
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        cleanup.enter_context(_reachable_by_all(Path(os.path.realpath(sys.executable)).parent, BIN, ROOT))
        cleanup.callback(lambda: [_remove_account(u) for u in (GRADER, INSTRUCTOR, *STUDENTS)])
        course, exchange, homes = _set_up_class(base)
        admin_token, password = secrets.token_hex(16), secrets.token_hex(8)
        ports = {k: _free_port() for k in ("hub", "internal", "proxy_api", "service")}
        config = _write_configs(base, course, exchange, admin_token, password, ports)
        (base / "hub").mkdir()
        log = base / "hub.log"
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "FTLAB_INSTRUCTORS": INSTRUCTOR,
            "FTLAB_STUDENTS": " ".join(STUDENTS),
            "FTLAB_LESSONS": str(ROOT / "lessons"),  # the hub copies them into each home at first start
        }
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "jupyterhub"), "-f", str(config)],
                cwd=base / "hub",
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        cleanup.callback(_stop, proc, base / "proxy.pid")
        h = Hub(f"http://127.0.0.1:{ports['hub']}", admin_token, password, base, course, exchange, homes, log)
        deadline = time.monotonic() + 120
        while True:
            try:
                if h.api("GET", "/hub/api/").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, f"jupyterhub exited {proc.returncode}:\n{h.tail()}"
            assert time.monotonic() < deadline, f"jupyterhub did not answer in 120 s:\n{h.tail()}"
            time.sleep(0.5)
        yield h


def _set_up_class(base: Path) -> tuple[Path, Path, dict[str, Path]]:
    """The accounts and their homes: the course account's home is the course root."""
    (base / "home").mkdir()
    (base / "home").chmod(0o755)
    course = base / "home" / GRADER
    course.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT, ignore=ignore)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    _add_account(GRADER, course)
    homes = {u: base / "home" / u for u in (INSTRUCTOR, *STUDENTS)}
    for user, home in homes.items():
        home.mkdir()
        _add_account(user, home)
    exchange = base / "exchange"
    exchange.mkdir()
    exchange.chmod(0o1777)  # as deploy/README.md says: world-writable with the sticky bit
    return course, exchange, homes


def _stop(proc: subprocess.Popen, proxy_pid_file: Path) -> None:
    """Stop the hub (it stops the servers and the service it started), then whatever it left behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):  # a hub that crashed leaves it
        os.kill(int(proxy_pid_file.read_text()), signal.SIGKILL)


# --------------------------------------------------------------------------- the class


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _solutions() -> dict[str, str]:
    """The instructor's answers, grade_id -> source, in notebook order."""
    source = nbformat.read(ROOT / "solutions" / ASSIGNMENT / NOTEBOOK, as_version=4)
    return {_meta(c)["grade_id"]: c.source for c in source.cells if _meta(c).get("solution")}


def _answered(student_nb: dict, solved: set[str] | None) -> dict:
    """The student's notebook with the instructor's answers pasted into some solution cells."""
    answers = _solutions()
    nb = nbformat.from_dict(student_nb)
    for cell in nb.cells:
        grade_id = _meta(cell).get("grade_id")
        if grade_id in answers and (solved is None or grade_id in solved):
            cell.source = answers[grade_id]
    return nb


def _assignments(hub: Hub, user: str, token: str) -> list[dict]:
    r = hub.api("GET", f"/user/{user}/assignments", token, params={"course_id": COURSE_ID})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body.get("success"), body
    return body["value"]


def test_class_releases_submits_collects_and_grades_through_the_hub(hub: Hub):
    formgrader = f"/services/{COURSE_ID}/formgrader/api"
    teacher = hub.token_for(INSTRUCTOR)
    tokens = {u: hub.token_for(u) for u in STUDENTS}

    # The course service answers the instructor, and nobody else.
    r = hub.api("GET", f"{formgrader}/assignments", teacher)
    assert r.status_code == 200, f"{r.status_code} {r.text[:500]}\n{hub.tail()}"
    assert ASSIGNMENT in [a["name"] for a in r.json()]
    refused = hub.api("GET", f"{formgrader}/assignments", tokens[STUDENTS[0]], allow_redirects=False)
    assert refused.status_code in (302, 403), refused.status_code

    # The instructor generates the student version and releases it.
    for step in ("assign", "release"):
        r = hub.api("POST", f"{formgrader}/assignment/{ASSIGNMENT}/{step}", teacher)
        assert r.status_code == 200 and r.json()["success"], f"{step}: {r.text[:3000]}"
    assert (hub.exchange / COURSE_ID / "outbound" / ASSIGNMENT / NOTEBOOK).exists(), r.json()["log"]

    # Each student fetches, edits (alice answers everything, bob the first question) and submits.
    solved = {STUDENTS[0]: None, STUDENTS[1]: set(list(_solutions())[:1])}
    for student, token in tokens.items():
        hub.start_server(student)
        listed = _assignments(hub, student, token)
        assert [(a["assignment_id"], a["status"]) for a in listed] == [(ASSIGNMENT, "released")], listed
        r = hub.api(
            "POST",
            f"/user/{student}/assignments/fetch",
            token,
            params={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT},
        )
        assert r.status_code == 200, r.text
        path = f"/user/{student}/api/contents/{COURSE_ID}/{ASSIGNMENT}/{NOTEBOOK}"
        r = hub.api("GET", path, token, params={"content": 1})
        assert r.status_code == 200, r.text
        nb = _answered(r.json()["content"], solved[student])
        r = hub.api("PUT", path, token, json={"type": "notebook", "format": "json", "content": nb})
        assert r.status_code == 200, r.text
        r = hub.api(
            "POST",
            f"/user/{student}/assignments/submit",
            token,
            params={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT},
        )
        assert r.status_code == 200 and "submitted" in {a["status"] for a in r.json()["value"]}, r.text[:2000]

    # Behind the hub, a student reaches only their own server: not another's, not the other's files.
    alice, bob = STUDENTS
    r = hub.api("GET", f"/user/{alice}/api/contents/{COURSE_ID}", tokens[bob], allow_redirects=False)
    assert r.status_code in (302, 403, 404), r.status_code
    r = hub.api("GET", f"/user/{bob}/api/contents/../{alice}", tokens[bob])
    assert r.status_code in (403, 404), r.status_code

    # The instructor collects through the service (nbgrader checks each submission's owner) ...
    r = hub.api("POST", f"{formgrader}/assignment/{ASSIGNMENT}/collect", teacher)
    assert r.status_code == 200 and r.json()["success"], r.text[:3000]
    for student in STUDENTS:
        assert (hub.course / "submitted" / student / ASSIGNMENT / NOTEBOOK).exists(), student

    # ... and grades in the course account, every submission sandboxed.
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(hub.course), "FTLAB_FAST": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(BIN / "ftlab"), "grade", ASSIGNMENT],
        cwd=hub.course,
        env=env,
        user=GRADER,
        group=GRADER,
        extra_groups=[],  # none of root's groups
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "NONE" not in proc.stdout  # sandboxed

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{hub.course / 'gradebook.db'}") as gb:
        assignment = gb.find_assignment(ASSIGNMENT)
        scores = {s: gb.find_submission(ASSIGNMENT, s).score for s in STUDENTS}
        assert assignment.max_score > 0
        assert scores[alice] == assignment.max_score, (scores, proc.stdout)
        assert 0 < scores[bob] < assignment.max_score, (scores, proc.stdout)


@contextlib.contextmanager
def _browser_logged_in(hub: Hub, student: str):
    """Headless Chromium logged in to the hub as `student` (the hub spawns their server); a failure saves a screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.set_default_timeout(120_000)
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", student)
            page.fill("#password_input", hub.password)
            page.click("#login_submit")
            page.wait_for_url(re.compile(rf"/user/{student}/"), timeout=240_000)  # the hub spawns the server
            yield page
        except Exception:
            page.screenshot(path=str(FAILURE_SCREENSHOT))
            print(f"browser state saved: {FAILURE_SCREENSHOT}")
            raise
        finally:
            browser.close()


def test_student_opens_lesson_2_in_a_browser_and_moves_its_slider(hub: Hub):
    from playwright.sync_api import expect

    student = STUDENTS[1]
    lesson = nbformat.read(ROOT / "lessons" / LESSON, as_version=4)
    explorer = next(i for i, c in enumerate(lesson.cells) if c.cell_type == "code" and "UnfreezeExplorer(" in c.source)
    with _browser_logged_in(hub, student) as page:
        own = hub.homes[student] / "lessons" / LESSON  # copied at the first start, and the student's own
        assert own.read_bytes() == (ROOT / "lessons" / LESSON).read_bytes() and own.owner() == student
        page.goto(f"{hub.url}/user/{student}/lab/tree/lessons/{LESSON}")
        expect(page.locator(".jp-NotebookPanel .jp-Cell").first).to_be_visible(timeout=120_000)
        status = page.locator(".jp-StatusBar-Widget", has_text="| Idle")
        expect(status.first).to_be_visible(timeout=120_000)  # the kernel is up (code run before is dropped)
        cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
        cells.first.click()
        page.keyboard.press("Escape")  # command mode: Shift+Enter runs a cell and selects the next
        for i in range(explorer + 1):  # run the lesson down to the explorer, one cell at a time
            page.keyboard.press("Shift+Enter")
            if lesson.cells[i].cell_type == "code":
                prompt = cells.nth(i).locator(".jp-InputPrompt")
                expect(prompt).to_have_text(re.compile(r"\[\d+\]"), timeout=240_000)
        cell = page.locator(".jp-NotebookPanel .jp-CodeCell", has=page.locator(".widget-slider"))
        output = cell.locator(".jp-Cell-outputArea")
        expect(output).to_contain_text("top 3 of", timeout=240_000)  # the kernel ran the lesson down to it
        before = output.inner_text()
        handle = output.locator(".widget-slider .noUi-handle, .widget-slider .ui-slider-handle").first
        handle.focus()
        page.keyboard.press("ArrowRight")
        expect(output).to_contain_text("top 4 of", timeout=60_000)
        after = output.inner_text()
        assert re.search(r"top 3 of \d+ groups", before) and re.search(r"top 4 of \d+ groups", after)
        counts = [re.search(r"([\d,]+) of ([\d,]+) parameters", t).groups() for t in (before, after)]
        (moved, total), (was, same_total) = counts[1], counts[0]
        assert total == same_total and int(moved.replace(",", "")) > int(was.replace(",", ""))  # more trains


# --------------------------------------------------------------------------- graded on submit

TOY = "toy"  # tests/course.py's one-check assignment: a few seconds to grade, no torch in the notebook
TOY_LIMIT = 4  # graded attempts per hour in the test's grading_service.toml
RIGHT, WRONG = "def answer():\n    time.sleep(SECONDS)\n    return 42", "def answer():\n    return 41"


def _as_grader(path: Path) -> None:
    _chown_tree(path, GRADER)


def _release_toy(hub: Hub, teacher: str) -> None:
    """The instructor adds the toy assignment, turns grading on submit on for it, and releases it."""
    from course import toy_notebook

    source = hub.course / "solutions" / TOY
    source.mkdir(parents=True)
    nbformat.write(toy_notebook(), source / "toy.ipynb")
    (hub.course / "grading_service.toml").write_text(f"[assignments.{TOY}]\nattempts_per_hour = {TOY_LIMIT}\n")
    _as_grader(hub.course / "solutions")
    _as_grader(hub.course / "grading_service.toml")
    for step in ("assign", "release"):
        r = hub.api("POST", f"/services/{COURSE_ID}/formgrader/api/assignment/{TOY}/{step}", teacher)
        assert r.status_code == 200 and r.json()["success"], f"{step}: {r.text[:3000]}"


def _write_answer(hub: Hub, student: str, token: str, answer: str) -> None:
    """The student edits their fetched copy (through their own server's contents API)."""
    path = f"/user/{student}/api/contents/{COURSE_ID}/{TOY}/toy.ipynb"
    r = hub.api("GET", path, token, params={"content": 1})
    assert r.status_code == 200, r.text
    nb = nbformat.from_dict(r.json()["content"])
    for cell in nb.cells:
        if _meta(cell).get("grade_id") == "answer":
            cell.source = answer
    r = hub.api("PUT", path, token, json={"type": "notebook", "format": "json", "content": nb})
    assert r.status_code == 200, r.text


def _submissions(hub: Hub, student: str) -> list[str]:
    """The student's submission folders in the exchange, oldest first."""
    inbound = hub.exchange / COURSE_ID / "inbound"
    return sorted((p.name for p in inbound.glob(f"{student}+{TOY}+*")), key=lambda n: n.split("+")[2])


def _outcome(hub: Hub, student: str, name: str, timeout: float = 300, in_flight: bool = False) -> str:
    """Wait until the service has answered submission ``name`` (or, with ``in_flight``, is grading it)."""
    state_file = hub.course / "service" / "queue" / TOY / f"{student}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(state_file.read_text())
            if in_flight and (state.get("in_flight") or {}).get("name") == name:
                return "in flight"
            done = [h["outcome"] for h in state.get("history", []) if h["name"] == name]
            if done and not done[-1].startswith("grading failed:"):
                return done[-1]
        time.sleep(0.2)
    raise AssertionError(f"the grading service did not answer {name} in {timeout} s:\n{hub.tail()}")


def _serve_pids() -> list[int]:
    uid = pwd.getpwnam(GRADER).pw_uid
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and proc.stat().st_uid == uid:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if b"serve" in argv and any(a.endswith(b"ftlab") for a in argv):
                    found.append(int(proc.name))
    return found


def _feedback_page(hub: Hub, page, student: str, name: str) -> str:
    """The words of the feedback the student fetched for submission ``name``, as their browser shows them."""
    from urllib.parse import quote

    local = f"{COURSE_ID}/{TOY}/feedback/{name.split('+')[2]}/toy.html"
    deadline = time.monotonic() + 60
    while not (hub.homes[student] / local).exists():
        assert time.monotonic() < deadline, f"no {local} in {student}'s home after Fetch Feedback"
        time.sleep(0.2)
    page.goto(f"{hub.url}/user/{student}/files/{quote(local)}")
    return " ".join(page.locator("body").inner_text().split())


def test_students_get_feedback_on_submit_through_the_assignments_tab(hub: Hub):
    from playwright.sync_api import expect

    alice, bob = STUDENTS
    teacher = hub.token_for(INSTRUCTOR)
    tokens = {u: hub.token_for(u) for u in STUDENTS}
    _release_toy(hub, teacher)
    for student in STUDENTS:
        hub.start_server(student)
        r = hub.api(
            "POST",
            f"/user/{student}/assignments/fetch",
            tokens[student],
            params={"course_id": COURSE_ID, "assignment_id": TOY},
        )
        assert r.status_code == 200, r.text
    # bob submits through his server's nbgrader API (the button's own call), alice in the browser below
    _write_answer(hub, bob, tokens[bob], WRONG)
    r = hub.api(
        "POST", f"/user/{bob}/assignments/submit", tokens[bob], params={"course_id": COURSE_ID, "assignment_id": TOY}
    )
    assert r.status_code == 200, r.text

    with _browser_logged_in(hub, alice) as page:

        def open_assignments() -> None:
            page.goto(f"{hub.url}/user/{alice}/lab")
            page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
            page.locator(".lm-Menu-itemLabel", has_text="Assignment List").click()
            expect(page.locator("#fetched_assignments_list")).to_contain_text(TOY, timeout=120_000)

        def submit(answer: str) -> str:
            before = len(_submissions(hub, alice))
            _write_answer(hub, alice, tokens[alice], answer)
            open_assignments()
            row = page.locator("#fetched_assignments_list .list_item", has_text=TOY).first
            row.locator("button", has_text="Submit").click()
            deadline = time.monotonic() + 120
            while len(_submissions(hub, alice)) == before:
                assert time.monotonic() < deadline, "the Submit button made no submission"
                time.sleep(0.2)
            return _submissions(hub, alice)[-1]

        def fetch_and_read(name: str) -> str:
            open_assignments()
            row = page.locator("#submitted_assignments_list .list_item", has_text=TOY).first
            row.locator("button", has_text="Fetch Feedback").first.click()
            submission = page.locator("#submitted_assignments_list .nested_list_item", has_text=name.split("+")[2])
            expect(submission).to_contain_text("view feedback", timeout=60_000)
            return _feedback_page(hub, page, alice, name)

        # a wrong answer: graded on submit, the feedback says what failed
        first = submit(WRONG)
        assert _outcome(hub, alice, first) == "graded; feedback released"
        text = fetch_and_read(first)
        assert "Your result: 0 / 2 points" in text and "answer(): got 41 where 42 was expected" in text, text

        # fixed and submitted again: the new score
        second = submit(RIGHT)
        assert _outcome(hub, alice, second) == "graded; feedback released"
        assert "Your result: 2 / 2 points" in fetch_and_read(second)

        # the service is killed while it grades; the hub restarts it; the submission is graded all the same
        third = submit(RIGHT)
        _outcome(hub, alice, third, in_flight=True)
        pids = _serve_pids()
        assert pids, "no ftlab serve process of the course account"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert _outcome(hub, alice, third) == "graded; feedback released"
        assert f"grading again after a restart: {third}" in hub.log.read_text(errors="replace")
        assert "Your result: 2 / 2 points" in fetch_and_read(third)

        # the deadline passes: a late submission still gets feedback, the gradebook keeps the on-time grade
        subprocess.run(
            [
                str(BIN / "python"),
                "-c",
                "import datetime\nfrom nbgrader.api import Gradebook\n"
                "with Gradebook('sqlite:///gradebook.db') as gb:\n"
                f"    gb.update_or_create_assignment({TOY!r}, duedate=datetime.datetime.utcnow())",
            ],
            cwd=hub.course,
            user=GRADER,
            group=GRADER,
            extra_groups=[],
            check=True,
            capture_output=True,
            env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(hub.course)},
        )
        late = submit(WRONG)
        assert _outcome(hub, alice, late) == "graded; feedback released"
        assert "Your result: 0 / 2 points" in fetch_and_read(late)

        # over the limit (4 an hour): not graded, and the page says when the next attempt can be
        refused = submit(RIGHT)
        assert _outcome(hub, alice, refused) == "not graded: attempt limit"
        text = fetch_and_read(refused)
        assert "attempt limit" in text and f"all {TOY_LIMIT} graded attempts allowed per hour" in text, text
        assert re.search(r"submit after \d{4}-\d\d-\d\d \d\d:\d\d UTC", text), text

    # bob sees his own feedback, and only his
    (bobs,) = _submissions(hub, bob)
    assert _outcome(hub, bob, bobs) == "graded; feedback released"
    r = hub.api(
        "POST",
        f"/user/{bob}/assignments/fetch_feedback",
        tokens[bob],
        params={"course_id": COURSE_ID, "assignment_id": TOY},
    )
    assert r.status_code == 200, r.text
    fetched = sorted((hub.homes[bob] / COURSE_ID / TOY / "feedback").glob("*/toy.html"))
    assert [f.parent.name for f in fetched] == [bobs.split("+")[2]]
    assert "Your result: 0 / 2 points" in fetched[0].read_text()
    feedback = hub.exchange / COURSE_ID / "feedback"
    assert stat.S_IMODE(feedback.stat().st_mode) == 0o711  # nobody lists the released pages

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{hub.course / 'gradebook.db'}") as gb:
        assert gb.find_submission(TOY, alice).score == 2  # the last on-time grade, not the late 0
        assert gb.find_submission(TOY, bob).score == 0

    # the grading service's page for the instructor, served by the course service: its link to the class report
    report = hub.course / "reports" / f"{TOY}.html"
    deadline = time.monotonic() + 120
    while not report.exists():  # rewritten once the service has nothing left to grade
        assert time.monotonic() < deadline, f"no {report} after the releases:\n{hub.tail()}"
        time.sleep(0.5)
    r = hub.api("GET", f"/services/{COURSE_ID}/files/reports/index.html", teacher)
    assert r.status_code == 200 and f'<a href="{TOY}.html">' in r.text, r.text[:2000]
    r = hub.api("GET", f"/services/{COURSE_ID}/files/reports/{TOY}.html", teacher)
    assert r.status_code == 200 and "Points per question" in r.text, r.text[:2000]
    r = hub.api("GET", f"/services/{COURSE_ID}/files/reports/index.html", tokens[bob], allow_redirects=False)
    assert r.status_code != 200  # a student cannot open the course service
