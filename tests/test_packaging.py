"""Install metadata: pip and conda users get the same packages (the ``dev`` and ``docs`` extras included: `make`
installs both); CI runs the README's command."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {_name(r): r.replace(" ", "") for r in project["dependencies"] + extras["dev"] + extras["docs"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    got = {_name(r): r.replace(" ", "") for r in pip_list if not r.startswith("-e")}
    assert got == wanted  # same names, same version ranges
    assert "python=3.11" in env["dependencies"]
    assert "-e ." in pip_list


def test_torch_is_not_pinned_past_the_course_machines():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = {_name(r): r for r in project["dependencies"]}
    assert reqs["torch"].endswith("<=2.14.1") and reqs["torchvision"].endswith("<=0.29.1")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_reading_a_notebook_builds_no_iri_parser():
    """jsonschema 4.25+ imports rfc3987-syntax, which builds a grammar at import (about 1.5 s of CPU): paid by every
    process that imports nbformat -- each nbgrader command, grading job and Jupyter server. The pin keeps it out."""
    import subprocess
    import sys

    code = "import sys, nbformat, nbgrader.api; print(sorted(m for m in sys.modules if m.startswith('rfc3987')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"imported {out.strip()}: keep jsonschema<4.25 (pyproject.toml)"
