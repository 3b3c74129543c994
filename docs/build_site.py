"""Build the course website into ``site/``: ``make site`` (full settings) or ``make site FAST=1``.

1. Every lesson is executed headless in ``lessons/`` (nbclient, kernel ``python3``, ``FTLAB_FAST`` set for the
   mode, one torch thread), timed, and kept in a cache per mode: a lesson runs again only when its code changed.
2. Each executed lesson becomes its page: widgets in their default state with a note, its measured run time and
   the assignments that grade it (from ``lessons/SYLLABUS_MAP.md``) at the top.
3. Each assignment's student page is written from ``exercises/`` (questions and answer skeletons only).
4. ``docs/`` and the generated pages go into one Sphinx source folder; Sphinx with myst-nb renders it and
   executes nothing.

``tests/test_lessons.py`` builds the site this way (fast settings), and checks the lessons' outputs on the
notebooks executed here: each lesson runs once per test run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import hashlib
import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LESSONS = ROOT / "lessons"
EXERCISES = ROOT / "exercises"
SYLLABUS_MAP = LESSONS / "SYLLABUS_MAP.md"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# Text that must never reach the site: nbgrader's markers of solutions and hidden tests.
FORBIDDEN = re.compile(r"### BEGIN|BEGIN SOLUTION|BEGIN HIDDEN TESTS")


def mode(fast: bool) -> str:
    return "fast" if fast else "full"


# --------------------------------------------------------------------------- 1. execution, cached per mode


def execute_lesson(path: Path, fast: bool) -> tuple[nbformat.NotebookNode, float]:
    """Run one lesson top to bottom in its folder; the executed notebook and the seconds it took.

    Raises nbclient's ``CellExecutionError`` on the first failing cell.
    """
    env = {
        "FTLAB_FAST": "1" if fast else "0",
        # One intra-op thread in the kernel: on a 2-core machine that is also running anything else, torch's two
        # OpenMP threads wait on each other and a forward pass got 8x slower (measured); one thread costs about
        # 30% on an idle machine and keeps the run time predictable.
        "OMP_NUM_THREADS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        # this checkout's library, whichever one the environment installed
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300 if fast else 3600,  # per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    # The kernel gets its environment explicitly, not through os.environ: lessons may run in threads side by side.
    client.execute(env={**os.environ, **env})
    return nb, time.perf_counter() - start


def cache_key(nb: nbformat.NotebookNode, fast: bool) -> str:
    """The mode, the kernel and the code cells: what a run depends on (prose edits do not re-run a lesson)."""
    h = hashlib.sha256(mode(fast).encode())
    h.update(json.dumps(nb.metadata.get("kernelspec", {}), sort_keys=True).encode())
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(b"\0" + cell.source.encode())
    return h.hexdigest()[:16]


def run_lesson(path: Path, fast: bool, cache: Path, reuse: bool = True) -> nbformat.NotebookNode:
    """The lesson as it is now, with the outputs of a run of its code in this mode (cached, or run now).

    The run's seconds, mode and machine are in ``nb.metadata["ftlab_run"]``.
    """
    source = nbformat.read(path, as_version=4)
    cached = cache / f"{path.stem}.{cache_key(source, fast)}.ipynb"
    if reuse and cached.exists():
        ran = nbformat.read(cached, as_version=4)
        print(f"{path.name}: from the cache (ran in {ran.metadata['ftlab_run']['seconds']:.0f} s)", flush=True)
    else:
        print(f"{path.name}: running ({mode(fast)} settings) ...", flush=True)
        ran, seconds = execute_lesson(path, fast)
        ran.metadata["ftlab_run"] = {
            "mode": mode(fast),
            "seconds": round(seconds, 1),
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d"),
        }
        cache.mkdir(parents=True, exist_ok=True)
        for old in cache.glob(f"{path.stem}.*.ipynb"):
            old.unlink()
        nbformat.write(ran, cached)
        print(f"{path.name}: ran in {seconds:.0f} s", flush=True)
    code = [c for c in source.cells if c.cell_type == "code"]
    for cell, done in zip(code, [c for c in ran.cells if c.cell_type == "code"], strict=True):
        cell.outputs, cell.execution_count = done.outputs, done.execution_count
    for key in ("widgets", "ftlab_run"):
        if key in ran.metadata:
            source.metadata[key] = ran.metadata[key]
    return source


def run_lessons(fast: bool, cache: Path, paths=None, reuse: bool = True, jobs: int = 1) -> dict[Path, object]:
    """Every lesson (or ``paths``): its executed notebook, or the exception its run raised.

    ``jobs`` lessons run at once, each in its own kernel. ``make test`` runs the fast lessons two at a time: one
    kernel thread each, so on two cores the lessons are no longer the one long pole of the suite. A full run whose
    seconds a lesson cites runs one at a time (``jobs=1``), so that its time is its own.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    paths = list(paths or sorted(LESSONS.glob("*.ipynb")))

    def one(path: Path) -> object:
        try:
            return run_lesson(path, fast, cache, reuse)
        except Exception as e:  # kept: the other lessons still run, and the caller says which failed
            print(f"{path.name}: FAILED\n{e}", flush=True)
            return e

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip(paths, pool.map(one, paths)))


# --------------------------------------------------------------------------- 2. lesson pages


def _widget_parts(state: dict, model_id: str) -> tuple[list[str], list[dict]]:
    """The controls (``description = value``) and the outputs drawn inside widget ``model_id``, in order."""
    model = state.get(model_id, {})
    fields = model.get("state", {})
    controls, outputs = [], []
    if model.get("model_name") == "OutputModel":
        outputs.extend(fields.get("outputs", []))
    elif fields.get("description") and "value" in fields:  # sliders and number boxes
        value = fields["value"]
        controls.append(
            f"{fields['description']} = {value:g}" if isinstance(value, float) else f"{fields['description']} = {value}"
        )
    elif fields.get("description") and fields.get("index") is not None:  # a choice: its label
        controls.append(f"{fields['description']} = {fields['_options_labels'][fields['index']]}")
    for child in fields.get("children", []):
        more = _widget_parts(state, child.removeprefix("IPY_MODEL_"))
        controls += more[0]
        outputs += more[1]
    return controls, outputs


def static_widgets(nb: nbformat.NotebookNode) -> int:
    """Replace each widget by its default state (controls, text, figure) and a note; return how many.

    A static page cannot run the widget's Python, so its controls would not move anything: the page shows what
    the widget drew when the lesson ran, and says how to use it live. The widget state is dropped, so no page
    loads the widget JavaScript.
    """
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(out)
                continue
            count += 1
            controls, drawn = _widget_parts(state, view["model_id"])
            settings = ", ".join(f"*{c}*" for c in controls) or "its defaults"
            note = (
                f"**Interactive in JupyterLab.** Shown in its default state ({settings}); to move the controls, "
                "run the lesson in JupyterLab (`make lab`)."
            )
            outputs.append(nbformat.v4.new_output("display_data", data={"text/markdown": note}))
            outputs.extend(nbformat.from_dict(o) for o in drawn)
        cell.outputs = outputs
    return count


def duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s} s" if minutes else f"{s} s"


def lesson_note(nb: nbformat.NotebookNode, graded_in: list[tuple[str, str]]) -> str:
    run = nb.metadata["ftlab_run"]
    settings = "the fast settings (`FTLAB_FAST=1`)" if run["mode"] == "fast" else "the full settings"
    links = " · ".join(f"[{title}](../assignments/{stem}.md)" for stem, title in graded_in) or "none"
    return "\n".join(
        [
            "```{admonition} This lesson",
            ":class: tip",
            f"**Run time:** {duration(run['seconds'])} with {settings}, measured when this page was built "
            f"({run['date']}, {run['cpus']} CPU cores, one torch thread).",
            "",
            f"**Graded in:** {links}",
            "",
            "**Run it yourself:** `make lab` opens `lessons/` in JupyterLab.",
            "```",
        ]
    )


def lesson_page(nb: nbformat.NotebookNode, graded_in: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """The executed lesson as a page: the note under its title, widgets as their default state."""
    page = copy.deepcopy(nb)
    static_widgets(page)
    title, _, intro = page.cells[0].source.partition("\n")
    cells = [nbformat.v4.new_markdown_cell(title), nbformat.v4.new_markdown_cell(lesson_note(page, graded_in))]
    if intro.strip():
        cells.append(nbformat.v4.new_markdown_cell(intro.strip()))
    page.cells[0:1] = cells
    return page


# --------------------------------------------------------------------------- 3. the map and assignment pages


def syllabus_links() -> dict[str, set[str]]:
    """Lesson stem -> the assignments whose questions grade what it teaches (``lessons/SYLLABUS_MAP.md``)."""
    links: dict[str, set[str]] = {}
    header = None
    for line in SYLLABUS_MAP.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip().lower() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if "where taught" not in header or "assessed in" not in header or set("".join(cells)) <= set("-: "):
            continue
        taught = re.findall(r"`(\d\d[a-z]?_[a-z0-9_]+)`", cells[header.index("where taught")])
        graded = re.findall(r"`(ps\d+_[a-z0-9_]+)`", cells[header.index("assessed in")])
        for lesson in taught:
            links.setdefault(lesson, set()).update(graded)
    return links


def exercise_notebook(stem: str) -> Path:
    (path,) = sorted((EXERCISES / stem).glob("*.ipynb"))
    return path


def assignment_title(stem: str) -> str:
    first = nbformat.read(exercise_notebook(stem), as_version=4).cells[0].source
    return first.partition("\n")[0].lstrip("# ").strip()


def _number(stem: str) -> int:
    return int(re.match(r"ps(\d+)", stem)[1])


def assignment_page(stem: str, taught_in: list[tuple[str, str]]) -> str:
    """The student page of one assignment: its questions and answer skeletons, from ``exercises/`` only.

    Left out: the setup and test cells (they are code for the notebook, not text) and the empty answer cells.
    """
    path = exercise_notebook(stem)
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and not meta.get("solution"):
            parts.append(cell.source)
        elif cell.cell_type == "code" and meta.get("solution"):  # where the student's code goes
            parts.append(f"```python\n{cell.source}\n```")
    lessons = " · ".join(f"[{title}](../lessons/{lesson}.ipynb)" for lesson, title in taught_in) or "—"
    rel = f"exercises/{stem}/{path.name}"
    note = "\n".join(
        [
            "````{admonition} This assignment",
            ":class: tip",
            f"**Work in** `{rel}`: open it with `make lab`, or fetch it on your course's hub. This page shows its "
            "questions; the notebook also has the setup and the visible tests.",
            "",
            f"**Taught in:** {lessons}",
            "",
            "**Check your work** before you submit ([how](../docs/guides/students.md#checking-your-work)):",
            "",
            "```bash",
            f"ftlab policy {rel}",
            f"ftlab check {rel}",
            "```",
            "````",
        ]
    )
    title, _, rest = parts[0].partition("\n")
    text = "\n\n".join([title, note, rest.strip(), *parts[1:]]) + "\n"
    if FORBIDDEN.search(text):
        raise ValueError(f"{rel} holds an nbgrader solution or hidden-test marker: regenerate exercises/")
    return text


# --------------------------------------------------------------------------- 4. the library reference


def library_modules() -> list[str]:
    """``ftlab`` and every module under it (``ftlab.grading`` included), ``__main__`` and private ones left out."""
    import ftlab

    names = [m.name for m in pkgutil.walk_packages(ftlab.__path__, "ftlab.")]
    return ["ftlab", *sorted(n for n in names if not any(part.startswith("_") for part in n.split(".")))]


def reference_page(name: str) -> str:
    """One module's page: its docstring, a summary table, then each public name defined there (autodoc).

    A name the module only re-exports (``ftlab.layerwise_lrs``) is linked to where it is documented, once.
    """
    module = importlib.import_module(name)
    own, reexported = [], []
    if hasattr(module, "__all__"):
        for item in module.__all__:
            obj = getattr(module, item)
            (own if getattr(obj, "__module__", name) == name else reexported).append((item, obj))
    else:  # no __all__: the functions and classes defined here
        own = [
            (n, o) for n, o in vars(module).items() if not n.startswith("_") and getattr(o, "__module__", "") == name
        ]
    rst = [f".. automodule:: {name}", "   :no-members:", ""]
    summarised = [item for item, obj in own if callable(obj)]
    if summarised:
        rst += [".. autosummary::", "   :nosignatures:", "", *(f"   {item}" for item in summarised), ""]
    for item, obj in own:
        if isinstance(obj, type):
            kind = "autoexception" if issubclass(obj, BaseException) else "autoclass"
            rst += [f".. {kind}:: {item}", "   :members:", ""]
        elif callable(obj):
            rst += [f".. autofunction:: {item}", ""]
        else:
            rst += [f".. py:data:: {item}", f"   :type: {type(obj).__name__}", ""]  # a constant: its name, no docstring
    text = [f"# `{name}`", "", "```{eval-rst}", *rst, "```", ""]
    if reexported:
        links = ", ".join(f"{{py:obj}}`~{obj.__module__}.{obj.__name__}`" for _, obj in reexported)
        text += [f"Also importable from `{name}`: {links}.", ""]
    return "\n".join(text)


# --------------------------------------------------------------------------- 5. Sphinx


def _write(path: Path, text: str) -> None:
    """Write only what changed, so that Sphinx rebuilds only the pages whose source changed."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def pages(runs: dict[Path, nbformat.NotebookNode]) -> dict[str, str]:
    """Every generated page: relative path in the Sphinx source -> its text."""
    taught = syllabus_links()
    assignments = sorted((p.name for p in EXERCISES.iterdir() if p.is_dir()), key=_number)
    titles = {stem: assignment_title(stem) for stem in assignments}
    lesson_titles = {p.stem: nb.cells[0].source.partition("\n")[0].lstrip("# ").strip() for p, nb in runs.items()}
    out = {}
    for path, nb in runs.items():
        graded = sorted(taught.get(path.stem, ()), key=_number)
        out[f"lessons/{path.stem}.ipynb"] = nbformat.writes(lesson_page(nb, [(s, titles[s]) for s in graded]))
    for stem in assignments:
        taught_in = [(lesson, lesson_titles[lesson]) for lesson in sorted(taught) if stem in taught[lesson]]
        out[f"assignments/{stem}.md"] = assignment_page(stem, [t for t in taught_in if t[0] in lesson_titles])
    for name in library_modules():
        out[f"docs/reference/api/{name}.md"] = reference_page(name)
    for rel in ("deploy/README.md", "lessons/SYLLABUS_MAP.md"):
        out[rel] = (ROOT / rel).read_text(encoding="utf-8")
    return out


def build(runs: dict[Path, object], fast: bool, out: Path, work: Path) -> None:
    """The site from executed lessons: Sphinx source in ``work/src``, pages in ``out``. Raises if a lesson failed.

    The source folder has the repository's layout (``docs/``, ``lessons/``, ``deploy/README.md``), so a relative
    link between the committed markdown files works on the site as it does in the repository.
    """
    failed = [path.name for path, nb in runs.items() if isinstance(nb, Exception)]
    if failed:
        raise RuntimeError(f"not building the site: {', '.join(failed)} failed to run")
    src = work / "src"
    shutil.copytree(
        DOCS, src / "docs", dirs_exist_ok=True, ignore=shutil.ignore_patterns("build_site.py", "__pycache__")
    )
    generated = pages(runs)
    # A renamed lesson, assignment or module leaves no stale page behind.
    for folder in ("lessons", "assignments", "docs/reference/api"):
        for old in (src / folder).glob("*.*"):
            if f"{folder}/{old.name}" not in generated:
                old.unlink()
    for rel, text in generated.items():
        _write(src / rel, text)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", "-d", str(work / "doctrees")]
    cmd += ["-t", "fast"] if fast else []
    # Sphinx writes into work/html (myst-nb keeps its images beside it, in work/jupyter_execute), then the site is
    # copied whole into out: nothing lands in the repository but out, and no page of an older build stays there.
    subprocess.run([*cmd, "-c", str(src / "docs"), str(src), str(work / "html")], check=True, cwd=ROOT)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(work / "html", out, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees"))
    _write(out / "index.html", '<!DOCTYPE html><meta http-equiv="refresh" content="0; url=docs/index.html">\n')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="the lessons' fast settings (FTLAB_FAST=1), and a banner")
    parser.add_argument("--out", type=Path, default=ROOT / "site", help="where the HTML goes (default site/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "site", help="cache and Sphinx source")
    parser.add_argument("--rerun", action="store_true", help="run every lesson again, ignoring the cache")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # the reference documents this checkout's library
    work = args.work / mode(args.fast)
    start = time.perf_counter()
    runs = run_lessons(args.fast, work / "executed", reuse=not args.rerun)
    try:
        build(runs, args.fast, args.out, work)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"site: {e}", file=sys.stderr)
        return 1
    print(f"site: {args.out / 'index.html'} ({mode(args.fast)} settings, {duration(time.perf_counter() - start)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
