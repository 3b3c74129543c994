"""The course website's builder (docs/build_site.py), and what the site tests look for in what it built.

``build_site`` is the builder module itself (``docs/`` is not a package). The checks read files only:
``problems_with_links`` every link, script, stylesheet and image of every page; ``secret_lines`` the text a
student must never see (solutions, hidden tests, rubrics), taken from ``solutions/``; ``site_text`` what the
site shows or ships, tags stripped.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

ROOT = Path(__file__).resolve().parents[1]

_spec = importlib.util.spec_from_file_location("build_site", ROOT / "docs" / "build_site.py")
build_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_site)

# nbgrader's markers: none may reach a page.
MARKERS = ["### BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "### BEGIN"]
SOLUTION_REGION = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.S)
# A line shorter than this is too common to say anything (``return out``).
MIN_LINE = 30


class _Page(HTMLParser):
    """The ids of a page, and each (tag, attribute, url) it links to or loads."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key):
                self.urls.append((tag, key, attrs[key]))


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def problems_with_links(site: Path) -> list[str]:
    """Every internal link that does not resolve (file, then #fragment), and every resource fetched from outside."""
    # Every page; not the theme's template fragments that Sphinx copies into _static/ as they are.
    pages = {p: _parse(p) for p in site.rglob("*.html") if "_static" not in p.relative_to(site).parts}
    problems = []
    for path, page in pages.items():
        rel = path.relative_to(site)
        for tag, key, url in page.urls:
            parts = urlsplit(url)
            if parts.scheme in ("mailto", "javascript", "data"):
                continue
            if parts.scheme or url.startswith("//"):
                if tag != "a":  # a page that loads a script, style or image from the network is not offline
                    problems.append(f"{rel}: <{tag} {key}={url!r}> loads from the network")
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel}: {url!r} -> missing {target}")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    problems.append(f"{rel}: {url!r} -> no id {parts.fragment!r} in {target.relative_to(site)}")
    return problems


def _squash(text: str) -> str:
    """Whitespace collapsed and markdown's emphasis and code marks dropped, as a rendered page shows it."""
    return " ".join(text.replace("*", "").replace("`", "").split())


def site_text(site: Path) -> str:
    """Everything the site serves that holds text (pages without their tags, sources, scripts, notebooks)."""
    parts = []
    for path in sorted(site.rglob("*")):
        if path.suffix not in (".html", ".txt", ".js", ".json", ".ipynb", ".md", ".py"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".html":
            text = html.unescape(re.sub(r"<[^>]+>", "", text))
        parts.append(_squash(text))
    return "\n".join(parts)


def _visible_text() -> str:
    """What students may see anyway: the exercises, the lessons, the library's source, the docs."""
    parts = []
    for path in [*sorted((ROOT / "exercises").glob("*/*.ipynb")), *sorted((ROOT / "lessons").glob("*.ipynb"))]:
        parts += [c.source for c in nbformat.read(path, as_version=4).cells]
    for path in [*sorted((ROOT / "ftlab").rglob("*.py")), *sorted((ROOT / "docs").rglob("*.md"))]:
        parts.append(path.read_text(encoding="utf-8"))
    return "\n".join(_squash(p) for p in parts)


@functools.cache
def secret_lines() -> tuple[tuple[str, str], ...]:
    """(notebook, line) for each distinctive line of a solution, a hidden test or a rubric in ``solutions/``.

    Distinctive: at least ``MIN_LINE`` characters and nowhere in what students see anyway (a solution may
    call the same code the library has).
    """
    visible = _visible_text()
    found = []
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "markdown" and meta.get("solution"):  # a written answer and its rubric
                texts = [cell.source]
            else:
                texts = [m.group(2) for m in SOLUTION_REGION.finditer(cell.source)]
            for text in texts:
                for line in text.splitlines():
                    line = _squash(line.lstrip("-#> "))
                    if len(line) >= MIN_LINE and line not in visible:
                        found.append((path.name, line))
    return tuple(found)
