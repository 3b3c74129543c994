"""nbgrader configuration of the ftlab course (README: "For instructors: autograding with nbgrader").

The repository root is the course root: source notebooks (solutions, visible and
hidden tests) live in ``solutions/<assignment>/``; ``nbgrader generate_assignment``
writes the student versions to ``exercises/<assignment>/``. ``submitted/``,
``autograded/``, ``feedback/``, ``reports/`` and ``gradebook.db`` appear next to
them while grading and are not committed.
"""

c = get_config()  # noqa: F821 -- injected by nbgrader's config loader

c.CourseDirectory.course_id = "ftlab"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"

# --- Autograding -------------------------------------------------------------
# SandboxedExecute (ftlab.grading.executor) is nbgrader's Execute made safe: the
# student's cells run in a bubblewrap sandbox, test cells (hidden tests included)
# run in the grader's own process; a kernel that dies or ignores the timeout
# interrupt is replaced; a whole notebook has a time budget (RobustExecute).
# `ftlab grade` and plain `nbgrader autograde` both use it.
c.Autograde.autograde_preprocessors = [
    "ftlab.grading.executor.SandboxedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Execute.timeout = 120  # seconds any one cell may run (also used by `nbgrader validate`)
c.RobustExecute.notebook_timeout = 600  # seconds a whole notebook may run
# Four notebooks train networks in one cell (ps5 EfficientNet-Lite0 on digits, ps7 Lite0 on two
# targets, ps8 MiniLM on words, ps9 Lite0 on nines): minutes with full settings on a 2-core CPU,
# about a minute with FTLAB_FAST=1 (the per-notebook budget leaves a wide margin).
_TRAINING = {"timeout": 900, "notebook_timeout": 1200}
c.RobustExecute.overrides = {
    name: dict(_TRAINING) for name in ("finetune", "domain_shift", "minilm_polarity", "pipeline")
}

# Collecting never follows a link a student put in the exchange (nbgrader's own collect copies with
# copytree, which does): links, hard links and special files are left out and logged.
c.ExchangeFactory.collect = "ftlab.grading.intake.SafeExchangeCollect"

# A deleted test cell is put back (from the gradebook) and graded, not skipped.
c.OverwriteCells.add_missing_cells = True

# Feedback goes back to students: it must not show the hidden tests. FeedbackSummary puts the total,
# the points per question and what to fix first (each failed check's message) at the top.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "ftlab.grading.feedback.FeedbackSummary",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
