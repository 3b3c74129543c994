"""lessons/SYLLABUS_MAP.md: every place it names exists, and every syllabus text has rows.

A reference is `` `STEM` § "Heading" ``: STEM is a lesson (``lessons/STEM.ipynb``) or an assignment
(``solutions/STEM/``, one notebook), and the heading must be the exact text of a markdown heading in that
notebook, so renaming a section without updating the map fails here. Reads files only (fast).
"""

import json
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "lessons" / "SYLLABUS_MAP.md"
SOURCES = ["000", "001", "002", "003"]
REF = re.compile(r'`(?P<stem>[0-9]{2}[a-z]?_[a-z0-9_]+|ps[0-9]+_[a-z0-9_]+)` § "(?P<heading>[^"]+)"')


def table_rows(text: str) -> list[dict[str, str]]:
    """Every markdown table in ``text`` as dicts keyed by its header cells (lower case)."""
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
        elif not all(set(c) <= set("-: ") for c in cells):
            assert len(cells) == len(header), f"row has {len(cells)} cells, header {len(header)}: {line}"
            rows.append(dict(zip(header, cells)))
    return rows


ROWS = table_rows(MAP.read_text(encoding="utf-8"))
ITEMS = [r for r in ROWS if "source" in r]


def notebook_path(stem: str) -> Path:
    if stem.startswith("ps"):
        found = sorted((ROOT / "solutions" / stem).glob("*.ipynb"))
        assert len(found) == 1, f"solutions/{stem}/ should hold one notebook, found {[p.name for p in found]}"
        return found[0]
    return ROOT / "lessons" / f"{stem}.ipynb"


@cache
def headings(stem: str) -> frozenset[str]:
    path = notebook_path(stem)
    assert path.is_file(), f"{path.relative_to(ROOT)} does not exist"
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = set()
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if m := re.match(r"#{1,6}\s+(.*\S)", line):
                    found.add(m.group(1))
    return frozenset(found)


def refs(cell: str) -> list[tuple[str, str]]:
    found = [(m["stem"], m["heading"]) for m in REF.finditer(cell)]
    assert cell.count("§") == len(found), f'a § reference is not in the form `stem` § "Heading": {cell}'
    return found


ALL_REFS = sorted({ref for row in ROWS for cell in row.values() for ref in refs(cell)})


def test_every_source_has_rows():
    counts = {s: sum(r["source"] == s for r in ITEMS) for s in SOURCES}
    assert all(counts.values()), counts
    assert {r["source"] for r in ITEMS} <= set(SOURCES)


def test_every_item_has_a_home_in_a_lesson():
    ids = [r["id"] for r in ITEMS]
    assert len(ids) == len(set(ids)), "duplicate item ids"
    for row in ITEMS:
        taught = refs(row["where taught"])
        assert taught and all(not stem.startswith("ps") for stem, _ in taught), row["id"]
        assert all(stem.startswith("ps") for stem, _ in refs(row["assessed in"])), row["id"]


def test_item_count_stated_matches_the_table():
    text = MAP.read_text(encoding="utf-8")
    stated = re.search(r"(\d+) items have a home \(([^)]*)\)", text)
    assert stated and int(stated[1]) == len(ITEMS)
    for source, n in re.findall(r"(\d{3}): (\d+)", stated[2]):
        assert int(n) == sum(r["source"] == source for r in ITEMS), source


def test_every_referenced_section_exists():
    assert len(ALL_REFS) > 50
    missing = [
        f"{notebook_path(stem).relative_to(ROOT)}: {heading!r}"
        for stem, heading in ALL_REFS
        if heading not in headings(stem)
    ]
    assert not missing, "no such heading:\n" + "\n".join(missing)


def test_headings_match_exactly():
    """A prefix or a changed word is not the heading: the match is on the whole text."""
    found = headings("01_what_pretrained_layers_learn")
    assert "Measured: linear probes at every depth" in found
    assert "Measured: linear probes" not in found
    assert "Measured: linear probes at each depth" not in found
