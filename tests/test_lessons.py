"""The lessons: stored clean, follow the house rules, run top to bottom headless, and read well as a website.

The slow tests execute every ``lessons/*.ipynb`` with nbclient (kernel ``python3``,
working directory ``lessons/``, ``FTLAB_FAST=1``), the way the website build does
(``docs/build_site.py``), and check that no cell fails and that the worked numbers the
notebooks compute are the course's numbers. ``FTLAB_LESSONS_FULL=1`` (``make lessons-full``)
runs them in full mode instead, where the lessons' ``if not FAST: assert ...`` cells check
the results their prose claims, and records each lesson's run time in
``lessons/measured/lesson_times.json`` (``benchmarks/lesson_times.py``), which the lessons'
first cells cite. Each notebook also asserts its own numbers in visible
``assert`` cells; the printed text checked here guards against those cells being edited away.

In fast mode the website is then built from those same runs (each lesson executes once) and
read in headless Chromium over a local HTTP server: every lesson page with its figures and no
error, the search, every internal link, nothing loaded from the network, the reference of
``ftlab.train.fit``, and no solution, hidden test or rubric text anywhere in it. Screenshots
go to ``$TMPDIR/ftlab-site-screenshots``.
"""

import ast
import functools
import http.server
import importlib.util
import inspect
import os
import re
import tempfile
import threading
from pathlib import Path

import nbformat
import pytest
from sitecheck import MARKERS, build_site, problems_with_links, secret_lines, site_text

from ftlab.train import fit

ROOT = Path(__file__).resolve().parents[1]
LESSONS_DIR = ROOT / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("*.ipynb"))
EXPECTED_LESSONS = [
    "01_what_pretrained_layers_learn.ipynb",
    "02_feature_extraction_vs_fine_tuning.ipynb",
    "03_learning_rate.ipynb",  # lesson 3a
    "03b_layerwise_rates.ipynb",  # lesson 3b
    "04_choosing_a_strategy.ipynb",
    "05_bert.ipynb",
    "06_best_practices.ipynb",
]
FULL = os.environ.get("FTLAB_LESSONS_FULL", "0") not in ("", "0")
_spec = importlib.util.spec_from_file_location("lesson_times", ROOT / "benchmarks" / "lesson_times.py")
lesson_times = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lesson_times)

# Text each executed lesson must print -- numbers its own code computed (a str, or a pattern).
MUST_PRINT = {
    "02_feature_extraction_vs_fine_tuning.ipynb": [
        "one layer 262,656   backbone 1,050,624   head 65,922   all 1,116,546",
        "65,922 trainable = 6.3% of the backbone, 5.9% of all 1,116,546",
        "591,234 trainable = 56.3% of the backbone, 53.0% of all 1,116,546",
        "k=3:   591,234 trainable (53.0% of all)",
        "ftlab unfreeze_top  BatchNorm running means moved by up to 0.000",
    ],
    "03_learning_rate.ipynb": [
        re.compile(r"onecycle: 0\.04 of the rate at step 0, the full rate at step \d+ of \d+"),
    ],
    "03b_layerwise_rates.ipynb": [
        "layer 4: 1e-3 x 0.1^0 = 1e-03\nlayer 3: 1e-3 x 0.1^1 = 1e-04\nlayer 2: 1e-3 x 0.1^2 = 1e-05\nlayer 1: 1e-3 x 0.1^3 = 1e-06",
        "layer1  lr=1e-06  params=262,656",
        "head    lr=1e-03  params=65,922",
        "γ = 0.1: top 1e-03 ... stem 1.0e-11",
        "γ = 0.7: top 1e-03 ... stem 5.8e-05",
    ],
    "05_bert.ipynb": [
        "z0 = (0.3)(0.4) + (-0.1)(0.1) + (0.5)(-0.3) + (0.2)(0.2) + (0.1) = 0.12 - 0.01 - 0.15 + 0.04 + 0.10 = 0.10",
        "z1 = (0.3)(-0.2) + (-0.1)(0.3) + (0.5)(0.5) + (0.2)(-0.1) + (-0.1) = -0.06 - 0.03 + 0.25 - 0.02 - 0.10 = 0.04",
        "z = [0.1000, 0.0400]   p = [0.5150, 0.4850]   loss = 0.6636",
        re.compile(r"picked 1[45]\.\d%; of those \[MASK\] (79|80)\.\d%, random (9|10)\.\d%, unchanged (9|10)\.\d%"),
        "[CLS] the film opens slowly . [SEP] but the second half is gripping . [SEP]",
    ],
    "04_choosing_a_strategy.ipynb": [
        "small data   feature_extraction        fine_tune_top",
        "huge data        fine_tune_all              scratch",
        re.compile(r"chosen on validation: \w+ \(val [01]\.\d{3}\) -> test [01]\.\d{3}"),
        "tf_efficientnet_lite0       3.38M         0.38 G",
        "resnet50                   23.53M         4.09 G",
        "feature_extraction      12,810     13.1        0.0    0.1",
        "fine_tune_all        3,383,818     13.1       12.9   25.8",
    ],
    "01_what_pretrained_layers_learn.ipynb": ["Egyptian cat", "conv_head  (1280, 7, 7)"],
    "06_best_practices.ipynb": [
        "reloaded: identical test predictions",
        re.compile(r"30% of training labels wrong: val 0\.\d{3} ± 0\.\d{3}   test 0\.\d{3} ± 0\.\d{3}   \(3 seeds\)"),
        re.compile(r"digit 8 left out: recall 0\.000 on its \d+ test images"),
        re.compile(r"new: tilted \+ blurred +\d+ +[01]\.\d{3}"),
    ],
}


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _text_outputs(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


# --------------------------------------------------------------------------- static (fast)


def test_the_lessons_are_there():
    """Six lessons, the third in two parts (3a, 3b): the file names keep lessons 4-6 where the texts cite them."""
    assert [p.name for p in LESSONS] == EXPECTED_LESSONS


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear outputs before committing"
    assert "widgets" not in nb.metadata  # no stored widget state either


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_follows_the_house_rules(path):
    nb = nbformat.read(path, as_version=4)
    code = _code(nb)
    source = "\n".join(code)
    assert 10 <= len(nb.cells) <= 20, f"{path.name} has {len(nb.cells)} cells"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert len(re.findall(r"\bseed_everything\(", source)) == 1 and "ftlab.seed_everything(0)" in code[0]
    assert "FAST = ftlab.fast_mode()" in code[0]
    for cell in code:
        tree = ast.parse(cell)  # every cell is plain Python: no magics or shell escapes
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert all(alias.name != "*" for alias in node.names), f"{path.name}: star import"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("interact", "interact_manual", "input"), f"{path.name}: blocking call"
    assert "download=True" not in source  # offline: data and weights come from installed packages


# --------------------------------------------------------------------------- execution (slow)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """``executed(path)``: the executed lesson, run once per test run, by whichever test asks first.

    Fast mode (``make test``): the first call runs every lesson the way the website build does
    (``docs/build_site.py``, into a fresh cache, two lessons at a time), and the site tests below build the site
    from these runs:
    each lesson executes once. Full mode (``make lessons-full``) runs the lessons asked for, one at a
    time, keeps them in the full site's cache (``build/site/full/executed``), so that a ``make site``
    after it executes nothing again, and records each run's seconds in ``lessons/measured/lesson_times.json``.
    A failure is kept and raised again for the next test that asks.
    """
    runs: dict[Path, object] = {}
    cache = ROOT / "build" / "site" / "full" / "executed" if FULL else tmp_path_factory.mktemp("executed")

    def get(path: Path):
        if path not in runs:
            paths = [path] if FULL else sorted(LESSONS_DIR.glob("*.ipynb"))
            jobs = 1 if FULL else 2  # fast: two at a time (the suite's long pole); full: each timed on its own
            runs.update(build_site.run_lessons(fast=not FULL, cache=cache, paths=paths, reuse=False, jobs=jobs))
            if FULL and not isinstance(runs[path], Exception):  # the run time the lesson's first cell cites
                seconds = runs[path].metadata["ftlab_run"]["seconds"]
                lesson_times.record(path.stem, "full", seconds, "make lessons-full (tests/test_lessons.py)")
        if isinstance(runs[path], Exception):
            raise runs[path]
        return runs[path], runs[path].metadata["ftlab_run"]["seconds"]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs(path, executed):
    nb, seconds = executed(path)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    stderr = "".join(
        o.text for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream" and o.name == "stderr"
    )
    assert "Traceback" not in stderr, stderr
    assert all(c.execution_count is not None for c in nb.cells if c.cell_type == "code")
    text = _text_outputs(nb)
    for expected in MUST_PRINT.get(path.name, []):
        found = expected.search(text) if isinstance(expected, re.Pattern) else expected in text
        assert found, f"{path.name} did not print {expected!r}"
    assert not any(LESSONS_DIR.glob("*.pt")), "a lesson left a model file in lessons/"
    if FULL:  # the measured numbers, for the log of `make lessons-full`
        print(f"----- {path.name}\n{text}")
    print(f"{path.name}: {seconds:.1f} s ({'full' if FULL else 'fast'} mode)")


@pytest.mark.slow
def test_every_lesson_was_executed(executed):
    """No lesson silently skipped: every notebook on disk runs to its last cell, whatever ran before this test."""
    on_disk = sorted(LESSONS_DIR.glob("*.ipynb"))
    assert on_disk, "no lessons found"
    seconds = {}
    for path in on_disk:
        nb, seconds[path.name] = executed(path)
        assert all(c.execution_count is not None for c in nb.cells if c.cell_type == "code"), path.name
    # Reported, not asserted: house rule, no timing asserts in tests (the run time depends on the machine's load).
    print(f"all {len(seconds)} lessons in {sum(seconds.values()):.0f} s ({os.cpu_count()} CPUs)")


# --------------------------------------------------------------------------- the website (slow)

CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's binary, as in tests/test_hub.py
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
SCREENSHOTS = Path(tempfile.gettempdir()) / "ftlab-site-screenshots"
site_test = pytest.mark.skipif(FULL, reason="make lessons-full runs the lessons only; make site builds the full site")


@pytest.fixture(scope="module")
def site(executed, tmp_path_factory):
    """The website built with the fast settings from the lessons executed above (no second execution)."""
    runs = {path: executed(path)[0] for path in LESSONS}
    work = tmp_path_factory.mktemp("site-work")
    build_site.build(runs, fast=True, out=work / "site", work=work)
    return work / "site"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test reports failed requests itself
        pass


@pytest.fixture(scope="module")
def browser(site):
    """(page, base URL, requests that failed or left the machine): headless Chromium on the site, served locally."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (`make system-deps` installs it)")
    from playwright.sync_api import sync_playwright

    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    bad: list[str] = []
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS, headless=True)
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)  # a loaded CI machine
            page.on("request", lambda r: bad.append(f"outside: {r.url}") if not r.url.startswith(base) else None)
            page.on("requestfailed", lambda r: bad.append(f"failed: {r.url}"))
            page.on(
                "response",
                lambda r: bad.append(f"{r.status}: {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
            )
            yield page, base, bad
            chromium.close()
    finally:
        server.shutdown()
        server.server_close()


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.mark.slow
@site_test
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_site_lesson_page(path, executed, browser):
    """The page shows the lesson's outputs with every figure loaded, no error, its run time and its assignments."""
    from playwright.sync_api import expect

    page, base, bad = browser
    shown = build_site.lesson_page(executed(path)[0], [])  # what the page was made from
    figures = sum("image/png" in o.get("data", {}) for c in shown.cells for o in c.get("outputs", []))
    page.goto(f"{base}lessons/{path.stem}.html")  # returns once the page and its images have loaded
    images = page.locator("div.cell_output img")
    assert images.count() == figures > 0
    for i in range(figures):
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0"), f"figure {i} did not load"
    assert page.locator("div.cell_output .traceback, div.cell_output .error").count() == 0
    assert "Traceback (most recent call last)" not in page.inner_text("main")
    note = page.locator(".admonition", has_text="Run time:")
    expect(note).to_contain_text(re.compile(r"Run time: \d+( min \d+)? s with the fast settings"))
    assert note.locator("a[href*='assignments/']").count() >= 1, "the lesson links to no assignment"
    if any("Explorer(" in c.source for c in shown.cells if c.cell_type == "code"):
        expect(page.locator("main")).to_contain_text("Interactive in JupyterLab")
    expect(page.locator(".bd-header-announcement")).to_contain_text("fast settings")
    _shot(page, path.stem)
    images.first.scroll_into_view_if_needed()
    _shot(page, f"{path.stem}-figure")
    assert not bad, bad


@pytest.mark.slow
@site_test
def test_site_search_finds_layerwise_lrs(browser):
    page, base, bad = browser
    page.goto(f"{base}search.html?q=layerwise_lrs")
    results = page.locator("#search-results ul.search li a")
    results.first.wait_for()
    hrefs = [results.nth(i).get_attribute("href") for i in range(results.count())]
    assert any("ftlab.optim.html#ftlab.optim.layerwise_lrs" in h for h in hrefs), hrefs
    _shot(page, "search-layerwise_lrs")
    assert not bad, bad


@pytest.mark.slow
@site_test
def test_site_reference_shows_the_signature_of_fit(browser):
    page, base, bad = browser
    page.goto(f"{base}docs/reference/api/ftlab.train.html#ftlab.train.fit")
    signature = " ".join(page.locator('[id="ftlab.train.fit"]').inner_text().split())
    assert signature.startswith("fit(")
    names = list(inspect.signature(fit).parameters)  # each shown as "name: type", in order
    found = [re.search(rf"(?<![\w.]){name}\s*:", signature) for name in names]
    assert all(found), (names, signature)
    assert [m.start() for m in found] == sorted(m.start() for m in found), (names, signature)
    _shot(page, "reference-fit")
    assert not bad, bad


@pytest.mark.slow
@site_test
def test_site_links_resolve_and_nothing_loads_from_the_network(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) > 40  # lessons, assignments, guides, reference
    problems = problems_with_links(site)
    assert not problems, "\n".join(problems[:30])


@pytest.mark.slow
@site_test
def test_site_has_no_solution_hidden_test_or_rubric_text(site):
    text = site_text(site)
    assert "layerwise_lrs" in text  # the text was read
    for marker in MARKERS:
        assert marker not in text, marker
    secrets = secret_lines()
    assert len(secrets) > 100 and any(line.startswith("Rubric (") for _, line in secrets)  # the search is not empty
    leaked = [f"{name}: {line}" for name, line in secrets if line in text]
    assert not leaked, "\n".join(leaked[:20])
