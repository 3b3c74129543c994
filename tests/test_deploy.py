"""deploy/: the hub configuration agrees with nbgrader's, and students get the wheel and lessons, never solutions."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import yaml
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _load(name: str):
    return PyFileConfigLoader(name, path=str(DEPLOY)).load_config()


def test_hub_config_gives_instructors_the_course_and_students_the_assignments(monkeypatch):
    monkeypatch.setenv("FTLAB_INSTRUCTORS", "ann")
    monkeypatch.setenv("FTLAB_STUDENTS", "s1 s2")
    c = _load("jupyterhub_config.py")
    groups = c.JupyterHub.load_groups
    assert groups["nbgrader-ftlab"]["users"] == ["s1", "s2"]
    assert groups["formgrade-ftlab"]["users"] == ["ann", "grader-ftlab"]
    assert c.Authenticator.allowed_users == {"ann", "s1", "s2"} and c.Authenticator.admin_users == {"ann"}
    service, grading = c.JupyterHub.services
    assert service["name"] == "ftlab" and service["user"] == "grader-ftlab"
    # graded on submit: `ftlab serve` on the course, as the course account, managed (and restarted) by the hub
    assert grading["name"] == "ftlab-grading" and grading["user"] == "grader-ftlab" and "url" not in grading
    assert grading["command"][:3] == ["ftlab", "serve", "--course=/home/grader-ftlab"]
    from ftlab.grading.service import build_parser

    args = build_parser().parse_args(grading["command"][2:])  # the options it is given exist
    assert args.course == "/home/grader-ftlab" and args.jobs >= 1 and not args.once
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["formgrade-ftlab"]["scopes"] == ["access:services!service=ftlab"]
    assert "inherit" in roles["server"]["scopes"]
    assert c.SystemdSpawner.mem_limit and c.SystemdSpawner.cpu_limit > 0  # per-student limits


def test_every_user_shares_the_exchange_of_the_course():
    shared, course = (
        _load("nbgrader_global_config.py"),
        PyFileConfigLoader("nbgrader_config.py", str(ROOT)).load_config(),
    )
    assert shared.CourseDirectory.course_id == course.CourseDirectory.course_id == "ftlab"
    assert shared.Exchange.root == "/srv/nbgrader/exchange"
    assert "CourseDirectory" not in shared or "source_directory" not in shared.CourseDirectory  # sources stay private
    assert "nbgrader_global_config.py /etc/jupyter/nbgrader_config.py" in (DEPLOY / "Dockerfile.student").read_text()


def test_kubernetes_values_have_limits_a_gpu_profile_and_the_exchange():
    values = yaml.safe_load((DEPLOY / "z2jh-values.yaml").read_text())
    single = values["singleuser"]
    assert single["memory"]["limit"] and single["cpu"]["limit"]
    gpu = [p for p in single["profileList"] if "GPU" in p["display_name"]]
    assert gpu and gpu[0]["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    mounts = {m["name"]: m["mountPath"] for m in single["storage"]["extraVolumeMounts"]}
    assert mounts["nbgrader-exchange"] == "/srv/nbgrader/exchange"
    assert values["hub"]["loadRoles"]["formgrade-ftlab"]["scopes"] == ["access:services!service=ftlab"]


def test_student_bundle_holds_the_wheel_and_lessons_only(tmp_path):
    out = DEPLOY / "student-bundle"
    try:
        proc = subprocess.run(["bash", str(DEPLOY / "build_student_bundle.sh")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        (wheel,) = out.glob("ftlab-*.whl")
        names = zipfile.ZipFile(wheel).namelist()
        assert "ftlab/grading/executor.py" in names and "ftlab/layers.py" in names
        assert not [n for n in names if n.split("/")[0] in {"solutions", "exercises", "tests", "deploy"}]
        assert sorted(p.name for p in (out / "lessons").glob("*.ipynb")) == sorted(
            p.name for p in (ROOT / "lessons").glob("*.ipynb")
        )
        assert not list(out.rglob("*solution*")) and not list(out.rglob("gradebook*"))
    finally:
        subprocess.run(["rm", "-rf", str(out)], check=True)
