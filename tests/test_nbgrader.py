"""The instructor's workflow end to end: a class through nbgrader and ``ftlab grade``, ps1-ps4.

Offline on CPU with ``FTLAB_FAST=1``: three ordinary students, six broken and sixteen
hostile submissions through generate, release, submit, collect, ``ftlab grade``
(sandboxed), grading by hand, a failed re-grade, feedback and export. The other half of the
class (ps5-ps9, the assignments that train) is ``test_nbgrader_training.py``. The notebooks
themselves, ``nbgrader validate`` and :class:`RobustExecute` are in ``test_exercises.py``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from classroom import (
    EXPECTED,
    HALVES,
    autograded,
    check_feedback,
    check_full_partial_and_zero_marks,
    check_solution_autogrades_to_full_marks,
    class_test,
    exchange_step,
    grade_by_hand,
    hand_in,
    open_class,
    release_feedback_and_export,
)
from course import answers as _answers
from course import ftlab_grade as _ftlab_grade
from course import meta as _meta
from course import nbgrader
from course import notebooks as _notebooks
from course import report as _report
from course import work_on as _work_on
from procs import command_lines

# --------------------------------------------------------------------------- slow: a whole class

# broken ps1 submissions next to the three students above: status in the driver's report, score
BROKEN = {
    "dan_loop": ("timeout", 8),  # `while True` before linear_params: interrupted, that test 0
    "erin_crash": ("kernel-died", 8),  # os._exit in linear_params: a fresh kernel reruns the cells that ended
    "frank_import": ("errors", 2),  # count_params' cell raises on import: its test and both strategies 0
    "gina_tamper": ("errors", 8),  # wrong linear_params, its test edited to pass; test_top3 deleted
    "ivy_json": ("invalid-notebook", 0),  # not a notebook at all
    "jack_widgets": ("errors", 10),  # all right, plus a slider, interact, tqdm and input()
}
WIDGET_CELLS = [
    "import ipywidgets as widgets\nfrom IPython.display import display\nfrom tqdm.auto import tqdm\n\n"
    "display(widgets.IntSlider(value=3))\nwidgets.interact(lambda k: k * 2, k=(1, 5))\nfor _ in tqdm(range(3)):\n    pass",
    "name = input('Your name: ')",
]


# A loop that never ends and sleeps: the grader interrupts it (or kills a kernel that ignores Ctrl-C) after the cell
# time limit (25 s here) either way, and a sleeping loop leaves the machine's cores to the rest of the suite. The
# busy-loop variants are graded in tests/test_grading.py and tests/test_exercises.py, with 3-5 s limits.
NEVER_ENDS = "import time\nwhile True:\n    time.sleep(0.5)\n"


def _broken_edits() -> dict:
    ps1 = _answers("ps1_parameters")
    wrong = "def linear_params(n_in, n_out, bias=True):\n    return n_in * n_out\n"

    def tamper(path):
        _work_on(path, {**ps1, "linear_params": wrong, "test_linear_params": "pass"}, drop=("test_top3",))
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if _meta(cell).get("grade_id") == "test_linear_params":
                cell.metadata.nbgrader["points"] = 100
        nbformat.write(nb, path)

    return {
        "dan_loop": lambda p: _work_on(p, {**ps1, "linear_params": NEVER_ENDS + ps1["linear_params"]}),
        "erin_crash": lambda p: _work_on(p, {**ps1, "linear_params": "import os\nos._exit(1)\n"}),
        "frank_import": lambda p: _work_on(
            p, {**ps1, "count_params": "import ftlab.no_such_module\n" + ps1["count_params"]}
        ),
        "gina_tamper": tamper,
        "ivy_json": lambda p: p.write_text('{"cells": [ this is not json'),
        "jack_widgets": lambda p: _work_on(p, ps1, extra=WIDGET_CELLS),
    }


MARKER = "ftlab-escapee-7f3a"  # in the command line of every process the hostile notebooks start

# hostile ps1 submissions: status in the report, score (of 10)
ATTACKS = {
    "mal_constants": ("errors", 0),  # no work: constants that pass the visible tests
    "mal_library": ("policy", 0),  # calls ftlab.count_parameters (also via a reference saved early)
    "mal_patcher": ("policy", 0),  # input transformers, custom exception handler, showtraceback, patched torch/ftlab
    "mal_escape": ("graded", 10),  # honest answers, plus: reads/deletes course files, sockets, processes that linger
    "mal_limits": ("errors", 0),  # no work: floods output, fills memory and disk, forks
    "mal_sigint": ("timeout", 8),  # linear_params ignores Ctrl-C inside the check; the answers around it count
    "mal_metadata": ("graded", 10),  # honest answers; points raised, a test duplicated, a "bonus" test added
    "mal_reply": ("policy", 0),  # honest answers, but every reply forged: 600 MiB of garbage per check
    "mal_exchange_link": ("missing", 0),  # its inbound folder holds a link to the solution: collect skips it
    "mal_symlink": ("missing", 0),  # submitted/.../parameters.ipynb -> the instructor's solution
    "mal_hardlink": ("missing", 0),  # submitted/.../parameters.ipynb: a hard link to gradebook.db
}
PLANTED = {"mal_symlink", "mal_hardlink", "mal_exchange_link"}  # written by hand, not through submit
# hostile ps4 submissions (ftlab grade --student 'm4_*'): status, score of 10 -- cls_logits (2) is honest in all
# but m4_empty, which answers cls_logits and softmax with empty tensors and cross_entropy/ce_grad honestly (3 + 2)
ATTACKS_PS4 = {
    "m4_guards": ("policy", 2),  # clears the runtime guards, then calls torch.softmax
    "m4_alias": ("policy", 2),  # names no guard holds: Tensor base class, aten ops, private aliases
    "m4_exec": ("policy", 2),  # executes torch's own source, then puts the code object back
    "m4_handler": ("policy", 2),  # replaces the kernel's request handler
    "m4_empty": ("errors", 5),  # torch.empty(0, 1, 1): "equal" to anything under allclose's broadcasting
}


def _attack_edits(course: Path, port: int) -> dict:
    ps1 = _answers("ps1_parameters")
    constants = {
        "count_params": "def count_params(model):\n    return (1_116_546, 1_116_546)\n",
        "linear_params": (
            "def linear_params(n_in, n_out, bias=True):\n"
            "    return {(512, 512): 262_656, (512, 128): 65_664, (128, 2): 258}.get((n_in, n_out), 0)\n"
        ),
        "strategies": "def strategy_counts(model, k):\n    return {1: (65_922, 0.0590), 3: (591_234, 0.5295)}[k]\n",
    }
    library = {
        "count_params": (
            "from ftlab.layers import count_parameters as saved_early\n"
            "def count_params(model):\n    c = saved_early(model)\n    return c.total, c.trainable\n"
        ),
        "linear_params": (
            "def linear_params(n_in, n_out, bias=True):\n"
            "    return ftlab.count_parameters(nn.Linear(n_in, n_out, bias=bias)).total\n"
        ),
        "strategies": (
            "def strategy_counts(model, k):\n    ftlab.unfreeze_top(model, k)\n"
            "    c = ftlab.count_parameters(model)\n    return c.trainable, c.trainable / c.total\n"
        ),
    }
    patcher = (
        "import builtins, math, torch, ftlab\n"
        "ip = get_ipython()\n"
        "ip.input_transformers_cleanup.append(lambda lines: ['pass\\n'])  # every later cell becomes `pass`\n"
        "ip.set_custom_exc((BaseException,), lambda *args, **kwargs: None)\n"
        "ip.showtraceback = lambda *args, **kwargs: None\n"
        "builtins.AssertionError = type('Quiet', (Exception,), {})\n"
        "math.isclose = lambda *args, **kwargs: True\n"
        "torch.equal = lambda *args: True\n"
        "ftlab.count_parameters = lambda model: (0, 0, 0)\n"
        "def count_params(model):\n    return (0, 0)\n"
        "def linear_params(n_in, n_out, bias=True):\n    return 0\n"
        "def strategy_counts(model, k):\n    return 0, 0.0\n"
    )
    escape = f"""
import os, shutil, socket, subprocess, sys, threading, time
course = {str(course)!r}
tried = {{}}
for what, action in [
    ("read-solutions", lambda: open(course + "/solutions/ps1_parameters/parameters.ipynb").read()),
    ("read-relative", lambda: open("../../../solutions/ps1_parameters/parameters.ipynb").read()),
    ("delete-classmate", lambda: shutil.rmtree(course + "/submitted/alice")),
    ("delete-gradebook", lambda: os.remove(course + "/gradebook.db")),
    ("write-course", lambda: open(course + "/PWNED", "w").write("x")),
    ("write-home", lambda: open(os.path.expanduser("~root") + "/PWNED", "w").write("x")),
    ("socket", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=3).sendall(b"PWNED")),
]:
    try:
        out = action()
        tried[what] = "DONE" + (": " + out[:100] if isinstance(out, str) else "")
    except Exception as exc:
        tried[what] = type(exc).__name__
print("ESCAPE", tried)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", {MARKER!r}], start_new_session=True)
if os.fork() == 0:
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(3600)", {MARKER!r}])
threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()
"""
    flood = 'print("x" * 1_000_000)  # a flood: the grader keeps the first part only\nfor _ in range(30):\n    print("y" * 1_000_000)'
    limits = f"""
import os
try:
    hog = bytearray(64 << 30)
    memory = "allocated 64 GiB"
except MemoryError:
    memory = "MemoryError"
try:
    with open("/tmp/big", "wb") as fh:
        for _ in range(2048):
            fh.write(b"z" * (1 << 20))
    disk = "wrote 2 GiB"
except OSError as exc:
    disk = type(exc).__name__ + " " + str(exc.errno)
os.remove("/tmp/big")
forks = 0
for _ in range(1000):
    try:
        if os.fork() == 0:
            os.execv("/bin/sh", ["/bin/sh", "-c", "exec 2>/dev/null; sleep 3600; true", {MARKER!r}])
        forks += 1
    except OSError:
        break
print("LIMITS", memory, "|", disk, "|", forks, "processes")
"""
    stubborn = (
        "import signal\nimport time\n"
        "def linear_params(n_in, n_out, bias=True):\n"
        "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "    while True:\n"
        "        time.sleep(0.5)\n"
    )
    forge = (
        "import ftlab.grading.kernel as k\n"
        "from IPython.display import publish_display_data\n"
        "def forge(payload):\n"
        "    with open(k._reply_path, 'wb') as fh:\n"
        "        for _ in range(600):\n"
        "            fh.write(b'\\xff' * (1 << 20))\n"
        "    publish_display_data({'application/x-ftlab-grading-reply': {'size': 1}})\n"
        "k._reply = forge\n"
    )

    def metadata(path):
        _work_on(path, ps1)
        nb = nbformat.read(path, as_version=4)
        for cell in list(nb.cells):
            if _meta(cell).get("grade_id") == "test_linear_params":
                cell.metadata.nbgrader["points"] = 50
                nb.cells.append(nbformat.from_dict(json.loads(json.dumps(cell))))  # a second copy of the test
        bonus = nbformat.v4.new_code_cell("assert True")
        bonus.metadata["nbgrader"] = {
            "grade": True,
            "grade_id": "bonus",
            "points": 90,
            "locked": True,
            "solution": False,
        }
        nb.cells.append(bonus)
        nbformat.write(nb, path)

    return {
        "mal_sigint": lambda p: _work_on(p, {**ps1, "linear_params": stubborn}),
        "mal_metadata": metadata,
        "mal_reply": lambda p: _work_on(p, ps1, extra=[forge]),
        "mal_constants": lambda p: _work_on(p, constants),
        "mal_library": lambda p: _work_on(p, library),
        "mal_patcher": lambda p: _work_on(p, {}, extra=[patcher]),
        "mal_escape": lambda p: _work_on(p, ps1, extra=[escape]),
        "mal_limits": lambda p: _work_on(p, {}, extra=[flood, limits]),
    }


def _ps4_attack_edits() -> dict:
    ps4 = _answers("ps4_bert_head")
    by_hand_ce = (
        "def ce_grad(logits, target):\n"
        "    e = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)\n"
        "    onehot = torch.zeros_like(logits)\n"
        "    onehot[torch.arange(len(target)), target] = 1.0\n"
        "    return (e / e.sum(dim=-1, keepdim=True) - onehot) / len(target)\n"
    )
    softmax_by = {
        "m4_guards": "from ftlab.grading import guards\nguards._active.clear()\n"
        "def softmax(z):\n    return torch.softmax(z, dim=-1)\n",
        "m4_alias": "def softmax(z):\n    return torch._C.TensorBase.softmax(z, -1)\n"
        "def _ce(z, y):\n    return torch.ops.aten.nll_loss(torch._log_softmax(z, -1, False), y)\n",
        "m4_exec": "import torch.nn.functional as G\nsrc = open(G.__file__).read()\nexec(compile(src, 'f', 'exec'), {})\n"
        "def softmax(z):\n    return G.softmax(z, -1)\nsoftmax.__code__ = softmax.__code__\n",
        "m4_handler": "ip = get_ipython()\nip.kernel.shell_handlers['execute_request'] = ip.kernel.shell_handlers['execute_request']\n"
        "def softmax(z):\n    return torch.softmax(z, dim=-1)\n",
    }
    edits = {name: (lambda p, src=src: _work_on(p, {**ps4, "softmax": src})) for name, src in softmax_by.items()}
    empty = "def {}(*args):\n    return torch.empty(0, 1, 1)\n"
    edits["m4_empty"] = lambda p: _work_on(
        p, {**ps4, "cls_logits": empty.format("cls_logits"), "softmax": empty.format("softmax"), "ce_grad": by_hand_ce}
    )
    return edits


def _plant_links(course: Path, exchange: Path) -> None:
    """Links a student can make: in the exchange's inbound folder, and (if they reach it) in submitted/."""
    source = course / "solutions" / "ps1_parameters" / "parameters.ipynb"
    stamp = "2026-12-06 10:00:00.000000 UTC"
    inbound = exchange / "ftlab" / "inbound" / f"mal_exchange_link+ps1_parameters+{stamp}+x1"
    inbound.mkdir(parents=True)
    (inbound / "timestamp.txt").write_text(stamp)
    (inbound / "parameters.ipynb").symlink_to(source)
    for student, make in (("mal_symlink", "symlink"), ("mal_hardlink", "hardlink")):
        folder = course / "submitted" / student / "ps1_parameters"
        folder.mkdir(parents=True)
        (folder / "timestamp.txt").write_text(stamp)
        if make == "symlink":
            (folder / "parameters.ipynb").symlink_to(source)
        else:
            os.link(course / "gradebook.db", folder / "parameters.ipynb")


LEAKS = ("BEGIN SOLUTION", "SQLite format 3")  # the instructor's answers, the gradebook's bytes


def _marked_processes() -> list[str]:
    return [f"{pid}: {cmd[:120]}" for pid, cmd in command_lines().items() if MARKER in cmd and "pytest" not in cmd]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """ps1-ps4: generate -> release -> submit -> collect -> autograde -> grade by hand -> feedback -> export,
    with the broken and hostile submissions among the class's."""
    from ftlab.grading.sandbox import check_available

    problem = check_available()
    assert problem is None, f"the grading tests need a working sandbox: {problem}"
    room = open_class(tmp_path_factory.mktemp("class"), "ps[1-4]_*")
    course, exchange = room.course, room.exchange

    # Plain nbgrader for assignment 2 (the same sandboxed executor) ...
    nbgrader("autograde", "ps2_layerwise_lr", cwd=course)

    # The broken and hostile ps1 submissions (graded below), with a listener for any socket they open:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    received: list[bytes] = []
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            received.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    edits = {**_broken_edits(), **_attack_edits(course, listener.getsockname()[1])}
    for student, edit in edits.items():
        hand_in(room, student, "ps1_parameters", edit)
    _plant_links(course, exchange)
    exchange_step("collect", course, exchange, "ps1_parameters")
    for student, edit in _ps4_attack_edits().items():
        hand_in(room, student, "ps4_bert_head", edit)
    exchange_step("collect", course, exchange, "ps4_bert_head")
    # ... and `ftlab grade`, two at a time, for the others: ps4 with its hostile students, ps3, and ps1 with the
    # broken and hostile ones (ps5-ps9 are graded in test_nbgrader_training.py, at the same time on the other worker).
    ps4 = _ftlab_grade(course, "ps4_bert_head", "--fast", "--jobs=2", "--Execute.timeout=45")
    _ftlab_grade(course, "ps3_freezing", "--fast", "--jobs=2")
    sources = _snapshot(course / "solutions")
    submitted_alice = _snapshot(course / "submitted" / "alice")
    refused = _ftlab_grade(course, "ps1_parameters", "--no-such-option", check=False)
    driver = _ftlab_grade(course, "ps1_parameters", "--fast", "--jobs=2", "--wall-clock=300", "--Execute.timeout=25")
    stop.set()
    thread.join()
    listener.close()
    lingering = _marked_processes()
    report = _report(course / "reports" / "ps1_parameters.csv")
    report_ps4 = _report(course / "reports" / "ps4_bert_head.csv")
    alice_autograded = autograded(room, "alice")  # before anything is graded by hand
    attacked = SimpleNamespace(
        received=received,
        lingering=lingering,
        sources_kept=_snapshot(course / "solutions") == sources,
        alice_kept=_snapshot(course / "submitted" / "alice") == submitted_alice,
        pwned=[p for p in (course / "PWNED", Path("~root").expanduser() / "PWNED") if p.exists()],
    )

    grade_by_hand(room)

    # Re-grades that fail leave what was there: a wall clock that kills nbgrader (bob's ps2 has a hand grade). Half
    # a second is too short for any machine to start nbgrader's sandboxed kernel (3 s was not, on an idle one) ...
    guard = course / "reports" / "wall_clock.csv"
    _ftlab_grade(course, "ps2_layerwise_lr", "--student=bob", "--wall-clock=0.5", f"--report={guard}")
    # ... and a run without the sandbox, which must be asked for and is marked in every row.
    unsandboxed = course / "reports" / "no_sandbox.csv"
    _ftlab_grade(course, "ps1_parameters", "--student=alice", "--fast", "--no-sandbox", f"--report={unsandboxed}")

    grades = release_feedback_and_export(room)
    return SimpleNamespace(
        room=room,
        course=course,
        grades=grades,
        report=report,
        driver=driver.stdout,
        report_ps4=report_ps4,
        alice_autograded=alice_autograded,
        ps4_driver=ps4.stdout,
        refused=refused,
        attacked=attacked,
        wall_clock=_report(guard)["bob"],
        unsandboxed=_report(unsandboxed)["alice"],
    )


@class_test
@pytest.mark.parametrize("assignment", HALVES["ps[1-4]_*"])
def test_solution_autogrades_to_full_marks(graded_class, assignment):
    """The instructor's answers in a student's copy (alice), autograded in the class (sandboxed, hidden tests in
    the grader): every autograded point, and the written answers left for grading by hand."""
    check_solution_autogrades_to_full_marks(graded_class.alice_autograded, assignment)


@class_test
def test_class_gets_full_partial_and_zero_marks(graded_class):
    check_full_partial_and_zero_marks(graded_class.room, graded_class.grades)


@class_test
def test_broken_submissions_get_a_clear_result_and_the_class_is_graded(graded_class):
    report = graded_class.report
    assert set(report) == set(EXPECTED) | set(BROKEN) | set(ATTACKS)
    assert report["alice"]["status"] == "graded" and report["alice"]["sandbox"] == "bubblewrap"
    assert report["alice"]["detail"] == "", report["alice"]  # an honest notebook: nothing to note
    assert graded_class.report_ps4["alice"]["detail"] == "", graded_class.report_ps4["alice"]
    for student, (status, score) in BROKEN.items():
        row = report[student]
        assert (row["status"], float(row["score"]), float(row["max_score"])) == (status, score, 10), row
        assert float(graded_class.grades[(student, "ps1_parameters")]["score"]) == score
        assert row["detail"] or status == "graded", row
    assert "CellTimeoutError in linear_params" in report["dan_loop"]["detail"]
    assert "DeadKernelError in linear_params" in report["erin_crash"]["detail"]
    assert "ModuleNotFoundError" in report["frank_import"]["detail"]
    assert "NotJSONError" in report["ivy_json"]["detail"]
    assert "StdinNotImplementedError" in report["jack_widgets"]["detail"]
    for student in ("alice", "ivy_json", "erin_crash"):
        assert student in graded_class.driver  # the table printed for the instructor


@class_test
def test_hostile_submissions_earn_nothing_they_did_not_do(graded_class):
    report = graded_class.report
    for student, (status, score) in ATTACKS.items():
        row = report[student]
        assert (row["status"], float(row["score"])) == (status, score), row
        if student not in PLANTED:
            assert float(graded_class.grades[(student, "ps1_parameters")]["score"]) == score
    library = report["mal_library"]["detail"]
    assert "PolicyViolation in test_count_params" in library and "uses count_parameters" in library, library
    assert "CellTimeoutError in test_linear_params" in report["mal_sigint"]["detail"]
    assert "test_linear_params was edited (points)" in report["mal_metadata"]["detail"]
    assert "'bonus' is marked for grading but is not one of the instructor's cells" in report["mal_metadata"]["detail"]
    assert "ftlab.grading" in report["mal_reply"]["detail"]


@class_test
def test_guard_bypasses_and_empty_answers_earn_only_the_honest_checks(graded_class):
    report = graded_class.report_ps4
    assert set(report) == set(ATTACKS_PS4) | set(EXPECTED), report
    for student, (status, score) in ATTACKS_PS4.items():
        row = report[student]
        assert (row["status"], float(row["score"])) == (status, score), row
        assert float(graded_class.grades[(student, "ps4_bert_head")]["score"]) == score
    assert "get_ipython" in report["m4_handler"]["detail"] and "exec" in report["m4_exec"]["detail"]
    path = graded_class.course / "autograded" / "m4_empty" / "ps4_bert_head" / "bert_head.ipynb"
    text = json.dumps(nbformat.read(path, as_version=4).dict())
    assert "shape (0, 1, 1)" in text, "the failed check says what was wrong with the answer"


@class_test
def test_links_are_never_followed(graded_class):
    """No byte from outside a submission's accepted files reaches autograded/ or feedback/."""
    report = graded_class.report
    assert "is a symbolic link" in report["mal_symlink"]["detail"], report["mal_symlink"]
    assert "is a hard link" in report["mal_hardlink"]["detail"], report["mal_hardlink"]
    collected = graded_class.course / "submitted" / "mal_exchange_link" / "ps1_parameters"
    assert sorted(p.name for p in collected.iterdir()) == ["timestamp.txt"]
    for student in [*ATTACKS, *ATTACKS_PS4]:
        for folder in ("autograded", "feedback"):
            for path in (graded_class.course / folder / student).rglob("*"):
                if path.is_file():
                    data = path.read_bytes()
                    assert not any(leak.encode() in data for leak in LEAKS), (student, path)


@class_test
def test_hostile_submissions_change_nothing_outside_their_sandbox(graded_class):
    a = graded_class.attacked
    assert a.sources_kept and a.alice_kept and not a.pwned
    assert a.received == [], "a sandboxed notebook reached a socket on the grading machine"
    assert a.lingering == [], f"processes started by submissions outlived grading: {a.lingering}"
    path = graded_class.course / "autograded" / "mal_escape" / "ps1_parameters" / "parameters.ipynb"
    text = json.dumps(nbformat.read(path, as_version=4).dict())
    tried = re.search(r"ESCAPE \{.*?\}", text).group(0)
    assert "DONE" not in tried, tried
    limits = graded_class.course / "autograded" / "mal_limits" / "ps1_parameters" / "parameters.ipynb"
    text = json.dumps(nbformat.read(limits, as_version=4).dict())
    memory, disk, forks = re.search(r"LIMITS (.*?) \| (.*?) \| (\d+) processes", text).groups()
    assert memory == "MemoryError" and disk.startswith("OSError"), (memory, disk)
    assert int(forks) < 200, forks
    assert "dropped by the grader" in text and len(text) < 4_000_000


@class_test
def test_unknown_option_is_refused_before_grading(graded_class):
    assert graded_class.refused.returncode == 2
    assert "unknown option '--no-such-option'" in graded_class.refused.stderr


@class_test
def test_failed_regrade_keeps_previous_grades(graded_class):
    row = graded_class.wall_clock
    assert row["status"] == "wall-clock" and "previous grades kept" in row["detail"], row
    assert float(graded_class.grades[("bob", "ps2_layerwise_lr")]["score"]) == EXPECTED["bob"]["ps2_layerwise_lr"]


@class_test
def test_grading_without_sandbox_is_marked(graded_class):
    row = graded_class.unsandboxed
    assert row["sandbox"] == "NONE (--no-sandbox)" and float(row["score"]) == 10, row


@class_test
def test_tampered_tests_are_replaced_by_the_instructors(graded_class):
    detail = graded_class.report["gina_tamper"]["detail"]
    assert "test_linear_params was edited" in detail and "test_top3 was deleted" in detail
    source = {_meta(c)["grade_id"]: c for c in _notebooks("solutions")["ps1_parameters"].cells if _meta(c)}
    path = graded_class.course / "autograded" / "gina_tamper" / "ps1_parameters" / "parameters.ipynb"
    graded = {_meta(c)["grade_id"]: c for c in nbformat.read(path, as_version=4).cells if _meta(c).get("grade_id")}
    assert graded["test_linear_params"].source == source["test_linear_params"].source  # hidden tests included
    assert graded["test_linear_params"].metadata.nbgrader["points"] == 2
    assert source["test_top3"].source in graded["test_top3"].source  # re-added (behind a comment) and run
    assert [o.ename for o in graded["test_linear_params"].outputs if o.output_type == "error"] == ["CheckFailed"]


@class_test
def test_feedback_for_every_graded_notebook(graded_class):
    check_feedback(graded_class.room)
    feedback = graded_class.course / "feedback"
    for student, (status, _) in BROKEN.items():
        exists = (feedback / student / "ps1_parameters" / "parameters.html").exists()
        assert exists == (status != "invalid-notebook"), student
