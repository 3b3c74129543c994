"""``ftlab serve``: the grading service's queue, limits, restarts and failures (fake graders), and one real run."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from ftlab.grading.feedback import HiddenChecksPassFail
from ftlab.grading.queue import Queue, Submission, attempt_refusal, parse_inbound_name
from ftlab.grading.release import release
from ftlab.grading.service import GradingService
from ftlab.grading.service_settings import SettingsError, parse_settings

ASSIGNMENT = "toy"
SETTINGS = """
[service]
check_owner = false

[assignments.toy]
attempts_per_hour = {per_hour}
attempts_per_day = 50
"""


class Killed(BaseException):
    """The service process dies mid-grade (nothing after this line of the service runs)."""


class FakeGrader:
    """Records what it grades and the pages it releases; fails as told; ``during`` runs while grading a student."""

    def __init__(self, fail: dict[str, int] | None = None, kill: bool = False, during=None) -> None:
        self.graded: list[str] = []  # submission names, in order
        self.pages: list[tuple[str, str, str]] = []  # (name, title, message)
        self.fail = dict(fail or {})  # student -> times to fail
        self.kill = kill
        self.during = during or {}  # student -> callable(work), run (once) in the grading thread
        self.lock = threading.Lock()

    def grade(self, work):
        if self.kill:
            raise Killed()
        hook = self.during.pop(work.sub.student, None)
        if hook is not None:
            hook(work)
        with self.lock:
            self.graded.append(work.sub.name)
            left = self.fail.get(work.sub.student, 0)
            if left:
                self.fail[work.sub.student] = left - 1
                return "nbgrader exited with 1"
        work.mark("fake grading")
        return None

    def notify(self, work, title, message):
        self.pages.append((work.sub.name, title, message))


def _stamp(offset: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _submit(inbound: Path, student: str, assignment: str = ASSIGNMENT) -> str:
    """A submission folder as ``nbgrader submit`` leaves it in the exchange."""
    name = f"{student}+{assignment}+{_stamp()}+{secrets.token_urlsafe(6)}"
    folder = inbound / name
    folder.mkdir(parents=True)
    (folder / "submission_secret.txt").write_text(secrets.token_hex(64))
    (folder / "timestamp.txt").write_text(name.split("+")[2])
    time.sleep(0.01)  # receipt times (ctimes) strictly ordered
    return name


def _service(tmp_path: Path, grader, per_hour: int | str = 10, jobs: int = 1, due: float | None = None, log=None):
    course = tmp_path / "course"
    course.mkdir(exist_ok=True)
    limit = f'"{per_hour}"' if isinstance(per_hour, str) else per_hour
    (course / "grading_service.toml").write_text(SETTINGS.format(per_hour=limit))
    lines = log if log is not None else []
    service = GradingService(
        course,
        grader,
        tmp_path / "inbound",
        jobs=jobs,
        log=lines.append,
        duedate=lambda assignment, student: due,
        settle=0,
    )
    return service


def test_newest_submission_per_student_wins(tmp_path):
    grader = FakeGrader()
    service = _service(tmp_path, grader)
    inbound = tmp_path / "inbound"
    first, second, newest = (_submit(inbound, "alice") for _ in range(3))
    bob = _submit(inbound, "bob")
    service.run_once()
    assert sorted(grader.graded) == sorted([newest, bob])  # alice's two older ones never graded
    state = service.queue.load(ASSIGNMENT, "alice")
    assert {h["name"]: h["outcome"] for h in state.history}[first] == "superseded"
    assert {h["name"]: h["outcome"] for h in state.history}[second] == "superseded"
    assert state.pending == [] and state.in_flight is None
    service.run_once()  # nothing is taken in twice
    assert len(grader.graded) == 2


def test_a_submission_still_being_written_waits_for_the_next_poll(tmp_path):
    grader = FakeGrader()
    service = _service(tmp_path, grader)
    name = _submit(tmp_path / "inbound", "alice")
    secret = tmp_path / "inbound" / name / "submission_secret.txt"
    secret.rename(secret.with_suffix(".partial"))  # nbgrader submit writes the secret last
    service.run_once()
    assert grader.graded == [] and service.queue.states() == []
    secret.with_suffix(".partial").rename(secret)
    service.settle = 60.0  # and the folder must have been quiet for a while
    service.run_once()
    assert grader.graded == []
    service.settle = 0.0
    service.run_once()
    assert grader.graded == [name]


def test_late_submission_does_not_push_out_the_on_time_one_waiting(tmp_path):
    queue = Queue(tmp_path)
    on_time = Submission("a+toy+1", "alice", ASSIGNMENT, 100.0, late=False)
    late = Submission("a+toy+2", "alice", ASSIGNMENT, 200.0, late=True)
    later = Submission("a+toy+3", "alice", ASSIGNMENT, 300.0, late=True)
    for sub in (on_time, late, later):
        queue.add(sub, keep_on_time=True)
    assert [p.name for p in queue.load(ASSIGNMENT, "alice").pending] == [on_time.name, later.name]
    other = Queue(tmp_path / "penalty")
    for sub in (on_time, late):
        other.add(sub, keep_on_time=False)
    assert [p.name for p in other.load(ASSIGNMENT, "alice").pending] == [late.name]


def test_late_is_decided_per_student_with_their_extension(tmp_path):
    """A student given an extension is on time after the class's due date; the others are late."""
    lines: list[str] = []
    service = _service(tmp_path, FakeGrader(), log=lines)
    due = {"alice": time.time() - 3600, "bob": time.time() + 86400}  # bob's extension runs a day past now
    service.duedate = lambda assignment, student: due[student]
    alice, bob = _submit(tmp_path / "inbound", "alice"), _submit(tmp_path / "inbound", "bob")
    service.run_once()
    assert f"queued {alice} (late)" in lines and f"queued {bob}" in lines, lines


def test_course_duedate_adds_the_students_extension(tmp_path):
    """nbgrader's per-student extension (Formgrader, ``grant_extension``) moves that student's due date only."""
    from nbgrader.api import Gradebook

    from ftlab.grading.service import course_duedate

    due = datetime(2026, 12, 1, 12, 0)
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        gb.add_assignment(ASSIGNMENT, duedate=due)
        for student in ("alice", "bob"):
            gb.add_student(student)
            gb.add_submission(ASSIGNMENT, student)
        gb.grant_extension(ASSIGNMENT, "bob", days=2, hours=3)
        gb.add_student("carol")  # never submitted: no record, no extension
    stamp = due.replace(tzinfo=UTC).timestamp()
    assert course_duedate(tmp_path, ASSIGNMENT) == stamp
    assert course_duedate(tmp_path, ASSIGNMENT, "alice") == stamp
    assert course_duedate(tmp_path, ASSIGNMENT, "carol") == stamp
    assert course_duedate(tmp_path, ASSIGNMENT, "bob") == stamp + timedelta(days=2, hours=3).total_seconds()
    assert course_duedate(tmp_path, "no_such_assignment", "bob") is None


def test_students_are_served_longest_waiting_first(tmp_path):
    queue = Queue(tmp_path)
    for i, (student, now) in enumerate([("carol", 30.0), ("alice", 10.0), ("bob", 20.0)]):
        queue.add(Submission(f"{student}+toy+{i}", student, ASSIGNMENT, now), now=now)
    # alice submits again while waiting: her place is kept, she gets no second slot
    queue.add(Submission("alice+toy+9", "alice", ASSIGNMENT, 40.0), now=40.0)
    (first,) = queue.next_batch(1)
    assert first.student == "alice" and first.in_flight.name == "alice+toy+9"
    queue.done(first, "graded", now=50.0)
    queue.add(Submission("alice+toy+10", "alice", ASSIGNMENT, 60.0), now=60.0)  # back of the line
    assert [s.student for s in queue.next_batch(3)] == ["bob", "carol", "alice"]


def test_service_grades_fairly_across_students(tmp_path):
    inbound = tmp_path / "inbound"
    again = []  # alice submits again while her first is graded: she waits behind bob and carol
    grader = FakeGrader(during={"alice": lambda work: again.append(_submit(inbound, "alice"))})
    service = _service(tmp_path, grader)
    order = [_submit(inbound, s) for s in ("alice", "bob", "carol")]
    service.run_once()
    assert grader.graded == [order[0], order[1], order[2], again[0]]


def test_a_free_slot_takes_the_next_submission_while_others_still_grade(tmp_path):
    """Pipelined: with two slots, a long grading does not hold back the queue behind it."""
    inbound = tmp_path / "inbound"
    carol_started = threading.Event()

    def slow(work):  # alice's grading ends only once carol's has started (or the test gives up)
        assert carol_started.wait(20), "carol was not started while alice was still grading: no pipelining"

    grader = FakeGrader(during={"alice": slow, "carol": lambda work: carol_started.set()})
    log: list[str] = []
    service = _service(tmp_path, grader, jobs=2, log=log)
    alice, bob, carol = (_submit(inbound, s) for s in ("alice", "bob", "carol"))
    service.run_once()
    assert grader.graded.index(carol) < grader.graded.index(alice)  # carol took bob's slot, alice still grading
    assert sorted(grader.graded) == sorted([alice, bob, carol])
    assert all(s.in_flight is None and not s.pending for s in service.queue.states())


def test_never_two_of_one_students_submissions_at_once(tmp_path):
    inbound = tmp_path / "inbound"
    again = []
    grader = FakeGrader(during={"alice": lambda work: again.append(_submit(inbound, "alice"))})
    service = _service(tmp_path, grader, jobs=4)
    first = _submit(inbound, "alice")
    service.run_once()  # her second one arrives while the first is graded, with three slots free
    assert grader.graded == [first, again[0]]


def test_each_graded_submission_says_where_its_time_went(tmp_path):
    from ftlab.grading.stages import durations

    log: list[str] = []
    grader = FakeGrader()
    service = _service(tmp_path, grader, log=log)
    name = _submit(tmp_path / "inbound", "alice")
    service.run_once()
    (line,) = [json.loads(x) for x in (tmp_path / "course" / "service" / "stages.jsonl").read_text().splitlines()]
    assert line["name"] == name and line["student"] == "alice" and line["assignment"] == ASSIGNMENT
    assert list(line["seconds"]) == ["poll", "queue", "fake grading", "record"]  # in the order the stages ended
    assert all(v >= 0 for v in line["seconds"].values())
    assert abs(sum(line["seconds"].values()) - line["total"]) < 0.01
    assert any(f"graded, feedback released: {name} in " in x and "fake grading" in x for x in log)
    # a stage marked more than once gets the sum of its gaps; the first mark is the origin
    assert durations([("start", 0.0), ("cells", 1.0), ("checks", 1.5), ("cells", 3.0)]) == {"cells": 2.5, "checks": 0.5}


def test_restart_mid_grade_loses_nothing(tmp_path):
    inbound = tmp_path / "inbound"
    names = [_submit(inbound, s) for s in ("alice", "bob")]
    dying = _service(tmp_path, FakeGrader(kill=True), jobs=2)
    with pytest.raises(Killed):
        dying.run_once()
    states = Queue(tmp_path / "course").states()
    assert sorted(s.in_flight.name for s in states if s.in_flight) == sorted(names)  # on disk: in flight
    grader = FakeGrader()
    log: list[str] = []
    _service(tmp_path, grader, jobs=2, log=log).run_once()  # a new process reads the state back
    assert sorted(grader.graded) == sorted(names)
    assert sum("grading again after a restart" in line for line in log) == 2
    assert all(s.in_flight is None and not s.pending for s in Queue(tmp_path / "course").states())


def test_a_failed_grading_is_retried_once_then_reported(tmp_path):
    inbound = tmp_path / "inbound"
    flaky, broken = _submit(inbound, "alice"), _submit(inbound, "bob")
    grader = FakeGrader(fail={"alice": 1, "bob": 5})
    service = _service(tmp_path, grader, jobs=2)
    service.run_once()
    assert grader.graded.count(flaky) == 2 and grader.graded.count(broken) == 2  # tried once more, no more
    assert [(n, t) for n, t, _ in grader.pages] == [(broken, "Grading failed")]  # alice's second try worked
    assert "instructor has been told" in grader.pages[0][2]
    failures = (tmp_path / "course" / "service" / "failures.log").read_text()
    assert broken in failures and "nbgrader exited with 1" in failures and flaky not in failures
    state = service.queue.load(ASSIGNMENT, "bob")
    assert state.in_flight is None and state.history[-1]["outcome"].startswith("grading failed twice")


def test_over_the_attempt_limit_the_student_is_told_when_to_try_again(tmp_path):
    inbound = tmp_path / "inbound"
    grader = FakeGrader()
    service = _service(tmp_path, grader, per_hour=2)
    graded = []
    for _ in range(2):
        graded.append(_submit(inbound, "alice"))
        service.run_once()
    refused = _submit(inbound, "alice")
    service.run_once()
    assert grader.graded == graded
    ((name, title, message),) = grader.pages
    first = service.queue.load(ASSIGNMENT, "alice").attempts[0][1]
    when = datetime.fromtimestamp(-(-(first + 3600) // 60) * 60, UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert name == refused and "attempt limit" in title
    assert "2 graded attempts allowed per hour" in message and f"submit after {when}" in message
    assert service.queue.load(ASSIGNMENT, "alice").history[-1]["outcome"] == "not graded: attempt limit"


def test_attempt_limits_slide_and_the_day_counts_too():
    hour = [["a", 0.0], ["b", 100.0]]
    assert attempt_refusal(hour, 3700.0, 2, None) is None  # the first one left the hour
    assert "after 1970-01-01 01:00 UTC" in attempt_refusal(hour, 3000.0, 2, None)
    assert "after 1970-01-01 01:01 UTC" in attempt_refusal([["a", 1.0], ["b", 100.0]], 3000.0, 2, None)  # rounded up
    day = [[str(i), i * 4000.0] for i in range(5)]
    message = attempt_refusal(day, 20000.0, None, 5)
    assert "per 24 hours" in message and "after 1970-01-02 00:00 UTC" in message
    assert attempt_refusal(day, 20000.0, None, None) is None


def test_links_files_garbage_and_strangers_in_inbound_are_ignored(tmp_path):
    inbound = tmp_path / "inbound"
    inbound.mkdir()
    target = tmp_path / "secret-solutions"
    target.mkdir()
    stamp = _stamp()
    (inbound / f"alice+toy+{stamp}+link").symlink_to(target)  # a link named like a submission
    (inbound / f"bob+toy+{stamp}+file").write_text("not a folder")
    for junk in ("garbage", f"al+ice+toy+{stamp}", "carol+toy+yesterday+x", f"dave+toy+{stamp}+x+y", "+toy+x"):
        (inbound / junk).mkdir()
    assert parse_inbound_name(f"alice+toy+{stamp}+AbC_d-9xYz12") == ("alice", "toy")
    assert parse_inbound_name(f"alice+toy+{stamp}") == ("alice", "toy")  # nbgrader without the random string
    assert parse_inbound_name(f"../alice+toy+{stamp}") is None
    grader, log = FakeGrader(), []
    service = _service(tmp_path, grader, log=log)
    service.run_once()
    service.run_once()
    assert grader.graded == [] and service.queue.states() == []
    ignored = [line for line in log if line.startswith("ignored")]
    assert len(ignored) == 7, log  # each said once, however often the folder is polled
    assert any("link" in line and "alice" in line for line in ignored)


def test_a_submission_must_belong_to_the_account_it_names(tmp_path):
    inbound = tmp_path / "inbound"
    me = __import__("pwd").getpwuid(os.getuid()).pw_name
    forged, own = _submit(inbound, "alice"), _submit(inbound, me)  # both folders are this account's
    course = tmp_path / "course"
    course.mkdir()
    (course / "grading_service.toml").write_text("[assignments.toy]\n")  # check_owner defaults to true
    grader, log = FakeGrader(), []
    GradingService(course, grader, inbound, log=log.append, duedate=lambda a, s: None, settle=0).run_once()
    assert grader.graded == [own]
    assert any(forged in line and "not owned by alice" in line for line in log)


def test_the_instructors_page_links_each_report_and_the_reports_follow_releases(tmp_path, monkeypatch):
    from ftlab.grading import report

    written: list[str] = []

    def fake_write(assignment, root, below=0.5):
        written.append(assignment)
        (Path(root) / "reports" / f"{assignment}.html").write_text("<html>class report</html>")

    monkeypatch.setattr(report, "write", fake_write)
    inbound = tmp_path / "inbound"
    grader = FakeGrader(fail={"bob": 5})
    service = _service(tmp_path, grader)
    index = tmp_path / "course" / "reports" / "index.html"
    alice = _submit(inbound, "alice")
    bob = _submit(inbound, "<b>ob")  # not a valid name: ignored, and never on the page unescaped
    _submit(inbound, "bob")
    service.run_once()
    assert written == [ASSIGNMENT]  # once: when the service had nothing left to grade
    page = index.read_text()
    assert f'<a href="{ASSIGNMENT}.html">' in page and "0 waiting, 0 being graded" in page
    assert "bob+toy" in page and "nbgrader exited with 1" in page  # the failure reported
    assert "<b>ob" not in page and bob not in page and alice not in page
    service.run_once()  # nothing new released: the report is not written again
    assert written == [ASSIGNMENT]


def test_the_report_csv_keeps_other_students_rows(tmp_path):
    import csv

    from ftlab.grading.driver import NotebookResult, update_report, write_report

    path = tmp_path / "toy.csv"
    write_report(path, "toy", [NotebookResult("alice", "toy", score=1), NotebookResult("bob", "toy", "errors")])
    update_report(path, "toy", [NotebookResult("bob", "toy", score=2, max_score=2)])
    update_report(tmp_path / "new.csv", "toy", [NotebookResult("carol", "toy")])
    with open(path, newline="") as fh:
        rows = {r["student"]: r for r in csv.DictReader(fh)}
    assert rows["alice"]["score"] == "1" and rows["bob"]["status"] == "graded" and rows["bob"]["score"] == "2"
    assert (tmp_path / "new.csv").read_text().splitlines()[1].startswith("toy,carol,toy,graded")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[assignments.toy]\nattempts_per_hour = 0\n", "attempts_per_hour must be a positive whole number"),
        ("[assignments.toy]\nattempts_per_day = true\n", "attempts_per_day must be a positive whole number"),
        ("[assignments.toy]\nhidden_checks = 'show'\n", "hidden_checks must be one of 'pass-fail', 'as-graded'"),
        ("[assignments.toy]\nlate = 'zero'\n", "late must be one of 'keep-on-time', 'penalty'"),
        ("[assignments.toy]\nattempts_per_hr = 3\n", "unknown setting 'attempts_per_hr'"),
        ("[assignment.toy]\n", r"unknown table \[assignment\]"),
        ("[service]\ncheck_owner = 'yes'\n", "check_owner"),
        ("[assignments.toy\n", "not valid TOML"),
        ("[defaults]\nenabled = 1\n", r"\[defaults\]: enabled must be true or false"),
    ],
)
def test_bad_settings_say_what_is_wrong(text, problem):
    with pytest.raises(SettingsError, match=problem):
        parse_settings(text)


def test_settings_defaults_and_switches():
    settings = parse_settings(
        "[defaults]\nattempts_per_hour = 2\n[assignments.ps1]\n[assignments.ps2]\nenabled = false\n"
        "[assignments.ps3]\nattempts_per_day = 'unlimited'\nlate = 'penalty'\n"
    )
    assert settings.rules("ps1").attempts_per_hour == 2 and settings.rules("ps1").hidden_checks == "pass-fail"
    assert settings.rules("ps2") is None and settings.rules("ps9") is None  # off, and not listed: off
    assert settings.rules("ps3").attempts_per_day is None and settings.rules("ps3").late == "penalty"
    assert settings.check_owner


def test_serve_refuses_bad_settings_with_a_clear_error(tmp_path, capsys):
    from ftlab.cli import main

    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.course_id = 'ftlab'\n")
    (tmp_path / "grading_service.toml").write_text("[assignments.toy]\nattempts_per_hour = -1\n")
    code = main(["serve", "--course", str(tmp_path), "--once", "--exchange", str(tmp_path / "exchange")])
    assert code == 2
    assert "grading_service.toml [assignments.toy]: attempts_per_hour must be" in capsys.readouterr().err
    assert main(["serve", "--course", str(tmp_path), "--poll", "0"]) == 2
    assert main(["serve", "--course", str(tmp_path / "nowhere"), "--once"]) == 2
    assert "is not a course root" in capsys.readouterr().err


def test_one_service_per_course(tmp_path):
    from ftlab.grading.service import hold_course_lock

    held = hold_course_lock(tmp_path)
    try:
        with pytest.raises(ValueError, match="another ftlab serve is running"):
            hold_course_lock(tmp_path)
    finally:
        held.close()
    hold_course_lock(tmp_path).close()  # free again once the holder is gone


def test_release_puts_feedback_where_only_that_submission_finds_it(tmp_path):

    secret = secrets.token_hex(64)
    (path,) = release(tmp_path, secret, {"toy": b"<html>yours</html>"})
    assert path.name == _page_name(secret)
    assert path.read_bytes() == b"<html>yours</html>" and oct(path.stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "feedback").stat().st_mode & 0o777) == "0o711"  # nobody lists the folder
    assert [p.name for p in (tmp_path / "feedback").iterdir()] == [path.name]  # no temporary file left


def test_hidden_checks_show_pass_fail_and_the_message_never_the_traceback():
    hidden = "### BEGIN HIDDEN TESTS\nexpect_close(f(2.0), 0.7310585, what='f(2)', hidden=True)\n### END HIDDEN TESTS"
    meta = {"grade": True, "solution": False, "locked": True, "points": 1}
    failed = nbformat.v4.new_code_cell(hidden, metadata={"nbgrader": {**meta, "grade_id": "t1", "score": 0}})
    failed.outputs = [
        nbformat.v4.new_output(
            "error",
            ename="CheckFailed",
            evalue="f(2): 1 of 1 values differ",
            traceback=["----> 2 expect_close(f(2.0), 0.7310585, what='f(2)', hidden=True)"],
        )
    ]
    passed = nbformat.v4.new_code_cell(hidden, metadata={"nbgrader": {**meta, "grade_id": "t2", "score": 1}})
    visible = nbformat.v4.new_code_cell("expect_close(f(0), 0.5, what='f(0)')", metadata={"nbgrader": meta})
    visible.outputs = [nbformat.v4.new_output("stream", name="stdout", text="the student's print\n")]
    nb = nbformat.v4.new_notebook(cells=[failed, passed, visible])
    nb, _ = HiddenChecksPassFail().preprocess(nb, {})
    text = json.dumps(nb)
    assert "0.7310585" not in json.dumps([c.outputs for c in nb.cells])
    assert nb.cells[0].outputs[0].text == "failed: CheckFailed: f(2): 1 of 1 values differ\n"
    assert nb.cells[1].outputs[0].text == "passed\n"
    assert nb.cells[2].outputs[0].text == "the student's print\n" and "student's print" in text  # own output kept


def test_feedback_config_puts_pass_fail_before_the_hidden_tests_are_cleared(tmp_path):
    from traitlets.config.loader import PyFileConfigLoader

    from ftlab.grading.release import feedback_config

    course = (Path(__file__).resolve().parents[1] / "nbgrader_config.py").read_text()
    (tmp_path / "nbgrader_config.py").write_text(feedback_config(course, hidden_pass_fail=True))
    chain = PyFileConfigLoader("nbgrader_config.py", str(tmp_path)).load_config().GenerateFeedback.preprocessors
    assert chain.index("ftlab.grading.feedback.HiddenChecksPassFail") + 1 == chain.index(
        "nbgrader.preprocessors.ClearHiddenTests"
    )
    assert chain.index("nbgrader.preprocessors.GetGrades") < chain.index("ftlab.grading.feedback.HiddenChecksPassFail")
    assert feedback_config(course, hidden_pass_fail=False) == course


# --------------------------------------------------------------------------- the real thing


def _course_on_submit(tmp_path: Path, hidden: bool = False) -> tuple[Path, Path]:
    """A toy course whose assignment is graded on submit (no owner check: one account here), and its exchange."""
    from course import make_toy_course

    course = make_toy_course(tmp_path, hidden=hidden)
    (course / "grading_service.toml").write_text("[service]\ncheck_owner = false\n[assignments.toy]\n")
    return course, tmp_path / "exchange"


def _student_copy(course: Path, answer: str) -> bytes:
    nb = nbformat.read(course / "exercises" / ASSIGNMENT / "toy.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "answer":
            cell.source = answer
    return nbformat.writes(nb).encode()


def _exchange_submit(exchange: Path, student: str, notebook: bytes) -> tuple[str, str]:
    name = _submit(exchange / "ftlab" / "inbound", student)
    (exchange / "ftlab" / "inbound" / name / "toy.ipynb").write_bytes(notebook)
    return name, (exchange / "ftlab" / "inbound" / name / "submission_secret.txt").read_text()


def _page_name(secret: str) -> str:
    """The file name nbgrader's *Fetch Feedback* looks for: the hash of the submission's secret and notebook."""
    from nbgrader.utils import notebook_hash

    return f"{notebook_hash(secret=secret, notebook_id='toy')}.html"


def _text(page: Path) -> str:
    """A feedback page's words, without markup."""
    import html

    text = re.sub(r"<(style|script)\b.*?</\1>", " ", page.read_text(), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def _serve_once(course: Path, exchange: Path, *args: str) -> subprocess.CompletedProcess:
    from course import env

    proc = subprocess.run(
        [sys.executable, "-m", "ftlab", "serve", "--course", str(course), "--exchange", str(exchange)]
        + ["--once", "--jobs", "2", *args],
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_serve_once_grades_releases_feedback_per_student_and_applies_the_late_rules(tmp_path):
    """On time: graded, released per student, recorded. Late under ``keep-on-time``: feedback, the on-time grade
    stands. Late under ``penalty``: recorded with nbgrader's penalty, except for a student given an extension."""
    from nbgrader.api import Gradebook

    course, exchange = _course_on_submit(tmp_path)
    right = _student_copy(course, "def answer():\n    time.sleep(SECONDS)\n    return 42")
    wrong = _student_copy(course, "def answer():\n    return 41")
    alice, alice_secret = _exchange_submit(exchange, "alice", right)
    bob, bob_secret = _exchange_submit(exchange, "bob", wrong)
    proc = _serve_once(course, exchange)
    feedback = exchange / "ftlab" / "feedback"
    pages = {p.name: _text(p) for p in feedback.iterdir()}
    mine = _page_name(alice_secret)
    theirs = _page_name(bob_secret)
    assert set(pages) == {mine, theirs}, proc.stderr[-3000:]  # one page per submission, nothing else
    assert "Your result: 2 / 2 points" in pages[mine]
    assert "Your result: 0 / 2 points" in pages[theirs] and "answer(): got 41 where 42 was expected" in pages[theirs]
    assert "return 41" in pages[theirs]  # the student's own code and output stay
    assert (course / "feedback" / "alice" / ASSIGNMENT / "toy.html").exists()
    assert (course / "submitted" / "bob" / ASSIGNMENT / "toy.ipynb").read_bytes() == wrong

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:  # the deadline passes
        gb.update_or_create_assignment(ASSIGNMENT, duedate=datetime.now(UTC).replace(tzinfo=None))
    time.sleep(0.05)
    late, late_secret = _exchange_submit(exchange, "alice", wrong)
    proc = _serve_once(course, exchange)
    late_page = _text(feedback / _page_name(late_secret))
    assert "Your result: 0 / 2 points" in late_page, proc.stderr[-3000:]  # feedback, late or not
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert gb.find_submission(ASSIGNMENT, "alice").score == 2  # the on-time grade stands
        assert gb.find_submission(ASSIGNMENT, "bob").score == 0
    assert (course / "submitted" / "alice" / ASSIGNMENT / "toy.ipynb").read_bytes() == right
    assert re.search(rf"queued {re.escape(late)} \(late\)", proc.stderr)
    assert "Your result: 2 / 2 points" in _text(feedback / mine)  # the earlier page is untouched

    # where the time went, per submission, in the order the stages ended
    lines = [json.loads(x) for x in (course / "service" / "stages.jsonl").read_text().splitlines()]
    assert {x["name"] for x in lines[:2]} == {alice, bob}
    stages = list(lines[0]["seconds"])
    expected = ["poll", "queue", "intake", "job files", "process start-up", "nbgrader set-up", "grader set-up"]
    expected += ["kernel start", "cells", "checks", "kernel stop", "nbgrader save", "feedback", "process exit"]
    assert stages == [*expected, "merge", "release", "record"], stages
    # the instructor's page and the class report, rewritten after the releases
    assert f'<a href="{ASSIGNMENT}.html">' in (course / "reports" / "index.html").read_text()
    assert "Points per question" in (course / "reports" / f"{ASSIGNMENT}.html").read_text()
    statuses = (course / "reports" / f"{ASSIGNMENT}.csv").read_text()
    assert ",alice,toy,graded," in statuses and ",bob,toy,errors," in statuses, statuses

    # The instructor switches to the penalty rule (nbgrader's plugin: a late submission scores 0) and gives bob a day.
    with (course / "nbgrader_config.py").open("a") as config:
        config.write('\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    (course / "grading_service.toml").write_text(
        '[service]\ncheck_owner = false\n[assignments.toy]\nlate = "penalty"\n'
    )
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.grant_extension(ASSIGNMENT, "bob", days=1)
    quick = _student_copy(course, "def answer():\n    return 42")
    late, _ = _exchange_submit(exchange, "alice", quick)
    extended, bob_secret = _exchange_submit(exchange, "bob", quick)
    proc = _serve_once(course, exchange)
    assert re.search(rf"queued {re.escape(late)} \(late\)", proc.stderr), proc.stderr[-3000:]
    assert re.search(rf"queued {re.escape(extended)}\n", proc.stderr), proc.stderr[-3000:]  # on time for bob
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        alice, bob = gb.find_submission(ASSIGNMENT, "alice"), gb.find_submission(ASSIGNMENT, "bob")
        assert alice.total_seconds_late > 0 and (alice.score, alice.late_submission_penalty) == (2, 2)  # 2 - 2 = 0
        assert bob.total_seconds_late == 0 and (bob.score, bob.late_submission_penalty) == (2, 0)
    assert (course / "submitted" / "alice" / ASSIGNMENT / "toy.ipynb").read_bytes() == quick  # recorded this time
    assert "Your result: 2 / 2 points" in _text(feedback / _page_name(bob_secret))


@pytest.mark.slow
def test_serve_grades_on_a_dask_cluster(tmp_path):
    """`ftlab serve --scheduler`: each submission is graded by a cluster worker and its feedback released."""
    from distributed import Client, LocalCluster

    course, exchange = _course_on_submit(tmp_path)
    _, alice_secret = _exchange_submit(exchange, "alice", _student_copy(course, "def answer():\n    return 42"))
    _, bob_secret = _exchange_submit(exchange, "bob", _student_copy(course, "def answer():\n    return 41"))
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        proc = _serve_once(course, exchange, "--scheduler", cluster.scheduler_address)
        ran = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert "run_job" in ran, (ran, proc.stderr[-3000:])  # the grading jobs were the cluster's tasks
    feedback = exchange / "ftlab" / "feedback"
    assert "Your result: 2 / 2 points" in _text(feedback / _page_name(alice_secret)), proc.stderr[-3000:]
    assert "answer(): got 41 where 42 was expected" in _text(feedback / _page_name(bob_secret))
    assert (course / "feedback" / "bob" / ASSIGNMENT / "toy.html").exists()


def test_serve_refuses_to_start_without_its_scheduler(tmp_path, capsys, monkeypatch):
    """An unreachable ``--scheduler`` stops ``ftlab serve`` at once with the address, not at the first grade."""
    from ftlab.grading.service import main

    monkeypatch.setenv("FTLAB_SCHEDULER_TIMEOUT", "1")  # seconds to keep trying (20 by default)
    course = tmp_path / "course"
    course.mkdir()
    (course / "nbgrader_config.py").write_text("c = get_config()  # noqa: F821\nc.CourseDirectory.course_id = 'toy'\n")
    (course / "grading_service.toml").write_text("[service]\ncheck_owner = false\n[assignments.toy]\n")
    code = main(
        ["--course", str(course), "--exchange", str(tmp_path / "x"), "--once", "--scheduler", "tcp://127.0.0.1:9"]
    )
    assert code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err


def test_a_dask_runner_keeps_one_client_and_replaces_a_lost_one(monkeypatch):
    """One client serves every submission (no handshake per student); one that lost its scheduler is replaced."""
    from ftlab.grading.runners import DaskRunner

    class FakeClient:
        def __init__(self):
            self.status, self.closed = "running", False

        def close(self, timeout=None):
            self.closed, self.status = True, "closed"

    made = []
    runner = DaskRunner("tcp://scheduler:8786")
    monkeypatch.setattr(runner, "_connect", lambda: made.append(FakeClient()) or made[-1])
    first = runner.client()
    assert runner.client() is first and len(made) == 1
    first.status = "failed"  # the scheduler went away for good
    second = runner.client()
    assert second is not first and first.closed and len(made) == 2
    runner.close()
    assert second.closed and runner.client() is made[2]


@pytest.mark.slow
def test_hidden_checks_pass_fail_end_to_end(tmp_path):
    """A real hidden check graded by `ftlab serve`: the page says passed / failed with the message, never the test."""
    course, exchange = _course_on_submit(tmp_path, hidden=True)
    right = _student_copy(course, "def answer():\n    return 42")
    wrong = _student_copy(course, "def answer():\n    return 41")
    _, alice_secret = _exchange_submit(exchange, "alice", right)
    _, bob_secret = _exchange_submit(exchange, "bob", wrong)
    proc = _serve_once(course, exchange)
    feedback = exchange / "ftlab" / "feedback"
    mine = _text(feedback / _page_name(alice_secret))
    theirs = _text(feedback / _page_name(bob_secret))
    assert "Your result: 3 / 3 points" in mine and "passed" in mine, proc.stderr[-3000:]
    assert "Your result: 0 / 3 points" in theirs
    assert "failed: CheckFailed: answer(), scaled: " in theirs  # the check's message, in place of its output
    for page in (mine, theirs):
        assert "42007" not in page and "* 1000" not in page and "HIDDEN TESTS" not in page  # never the hidden test


@pytest.mark.slow
def test_a_warm_job_is_graded_like_a_cold_one_and_killed_whole_on_time(tmp_path):
    """The service's jobs fork from a warm process (ftlab.grading.warm): same grades; the wall clock still kills."""
    import psutil
    from course import make_toy_course, submit_copies

    from ftlab.grading.driver import open_course, prepare
    from ftlab.grading.jobs import run_job

    course = make_toy_course(tmp_path)
    submit_copies(course, ASSIGNMENT, {"alice": {}, "bob": {"answer": "import time\ntime.sleep(600)"}})
    toy = open_course(ASSIGNMENT, course, wall_clock=600)
    cold, warm = (run_job(prepare(toy, "alice").jobs[0], warm=w) for w in (False, True))
    assert cold.rc == warm.rc == 0, warm.log[-3000:]
    assert cold.autograded.keys() == warm.autograded.keys() and warm.gradebook
    assert "process start-up" in dict(warm.marks) and "cells" in dict(warm.marks)

    (job,) = prepare(toy, "bob").jobs
    job.wall_clock = 15  # the answer cell sleeps past it
    killed = run_job(job, warm=True)
    assert killed.rc is None and killed.gradebook is None
    servers = [p for p in psutil.Process().children() if "forkserver" in " ".join(p.cmdline())]
    assert servers and all(s.children(recursive=True) == [] for s in servers)  # nothing of the job is left
