"""Measured numbers in prose come from committed files, so the prose cannot drift from the measurement.

Convention: a number that a measurement produced is written in markdown (a lesson's markdown cells or
README.md) followed at once by an HTML comment naming where it comes from -- invisible when rendered::

    96.7 %<!-- lr_story: arms.syllabus.val_accuracy.mean -->
    ± 1.2<!-- lr_story: arms.syllabus.val_accuracy.std -->
    41 s<!-- lr_story: arms.syllabus.seconds.mean -->

``lr_story`` is ``lessons/measured/lr_story.json`` (written by ``benchmarks/lr_story.py --write``) and
``near_far`` is ``lessons/measured/near_far.json`` (``benchmarks/near_far.py --write``); ``make measured``
runs both. The key is a dotted path into the file. The number before the marker (a unit such as
``%`` or ``s`` may stand between) must equal the value rounded to the decimals written; a ``%`` means the
value is a fraction printed as a percentage, a ``min`` that it is seconds printed as minutes.

``lesson_times`` is ``lessons/measured/lesson_times.json``, each lesson's run time (written by
``benchmarks/lesson_times.py`` and by ``make lessons-full``): every lesson's first cell cites its own full
and fast times from it. Fast: it reads files only.
"""

import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "lessons" / "measured"
MARKER = re.compile(r"([-+]?\d+(?:\.\d+)?)(\s*(?:%|min|s|x|×)?)\s*<!--\s*(\w+):\s*([\w.\-]+)\s*-->")
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
PROSE = [ROOT / "README.md", *LESSONS]
TIMES = MEASURED / "lesson_times.json"


def _markdown(path: Path) -> str:
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return path.read_text()


def _lookup(data, key: str):
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _claims():
    out = []
    for path in PROSE:
        for m in MARKER.finditer(_markdown(path)):
            out.append((path.name, *m.groups()))
    return out


def agrees(written: str, unit: str, value: float) -> bool:
    """``written`` (with ``unit``) is ``value`` rounded as printed: a ``%`` scales a fraction by 100, a ``min``
    turns seconds into minutes."""
    decimals = len(written.split(".")[1]) if "." in written else 0
    shown = {"%": value * 100, "min": value / 60}.get(unit.strip(), value)
    return f"{shown:.{decimals}f}" == f"{float(written):.{decimals}f}"


def test_agrees_rounds_as_printed():
    assert agrees("96.7", " %", 0.9666) and not agrees("96.6", " %", 0.9666)
    assert agrees("0.967", "", 0.96666) and agrees("41", " s", 40.6) and not agrees("40", " s", 40.6)
    assert agrees("9", " min", 515) and agrees("8.6", " min", 515) and not agrees("8", " min", 515)


def test_measured_files_are_complete():
    files = sorted(p for p in MEASURED.glob("*.json") if p != TIMES)  # lesson_times.json: the test below
    assert files, "no measured numbers committed"
    for path in files:
        data = json.loads(path.read_text())
        assert not data.get("quick"), f"{path.name} holds a smoke run (--quick), not a measurement"
        for field in ("seeds", "torch", "machine", "date", "wall_seconds"):
            assert field in data, f"{path.name} lacks {field}"
        assert len(data["seeds"]) >= 3
        tables = [data["arms"]] if "arms" in data else [t["arms"] for t in data["targets"].values()]
        assert tables and all(tables), f"{path.name} has no arms"
        for arms in tables:
            for arm, row in arms.items():
                stats = row["val_accuracy"]
                assert len(stats["per_seed"]) == len(data["seeds"]), arm
                assert abs(sum(stats["per_seed"]) / len(stats["per_seed"]) - stats["mean"]) < 1e-3, arm


def test_every_measured_file_is_cited_and_remade_by_make_measured():
    cited = {source for *_, source, _key in _claims()}
    makefile = (ROOT / "Makefile").read_text()
    for path in sorted(MEASURED.glob("*.json")):
        assert path.stem in cited, f"no prose cites {path.name}"
        if path == TIMES:  # written as each lesson runs in `make lessons-full` (tests/test_lessons.py)
            continue
        assert f"benchmarks/{path.stem}.py --write" in makefile, f"make measured does not rewrite {path.name}"


def test_prose_cites_measured_numbers():
    claims = _claims()
    assert any(name == "03_learning_rate.ipynb" for name, *_ in claims), "lesson 3a cites no measured number"
    assert any(name == "04_choosing_a_strategy.ipynb" and source == "near_far" for name, _, _, source, _ in claims), (
        "lesson 4 cites no near_far number"
    )
    for name, written, unit, source, key in claims:
        path = MEASURED / f"{source}.json"
        assert path.exists(), f"{name}: {written}{unit} cites {source}, but {path.name} is not committed"
        value = _lookup(json.loads(path.read_text()), key)
        assert agrees(written, unit, value), f"{name}: prose says {written}{unit}, {source}.json has {key} = {value}"


@pytest.mark.parametrize("path", PROSE, ids=[p.name for p in PROSE])
def test_no_malformed_marker(path):
    """A marker that does not follow a number would be checked against nothing."""
    text = _markdown(path)
    markers = re.findall(r"<!--\s*\w+:\s*[\w.\-]+\s*-->", text)
    assert len(markers) == len(MARKER.findall(text)), f"{path.name}: a measured-number marker follows no number"


def test_lesson_times_are_complete():
    """Every lesson on disk has a run time in both modes, with the machine, the date and where it came from."""
    data = json.loads(TIMES.read_text(encoding="utf-8"))
    assert data["gpu"]  # what is known about GPU run times, if only "not measured"
    for mode in ("full", "fast"):
        assert set(data[mode]) == {p.stem for p in LESSONS}, f"{mode}: lessons without a time, or times of none"
        for lesson, entry in data[mode].items():
            assert entry["seconds"] > 0, (mode, lesson)
            assert all(entry.get(field) for field in ("machine", "date", "source")), (mode, lesson)


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_states_its_run_time(path):
    """The first cell cites the lesson's own full and fast run times from lesson_times.json."""
    first = nbformat.read(path, as_version=4).cells[0].source
    cited = {(source, key) for *_, source, key in MARKER.findall(first)}
    for mode in ("full", "fast"):
        assert ("lesson_times", f"{mode}.{path.stem}.seconds") in cited, f"{path.name}: no {mode}-mode run time"
