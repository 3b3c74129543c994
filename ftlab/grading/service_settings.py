"""What the instructor decides about grading on submit, per assignment: ``grading_service.toml``.

The service (:mod:`.service`) grades only the assignments this file turns on, so a
course without it grades nothing on submit -- the instructor opts in per assignment.
TOML because it is read by a long-running process the instructor does not restart by
hand for every edit (it is re-read each poll), and a typo must be an error naming the
key, not a silently different course::

    [service]
    check_owner = true            # a submission must belong to the account it names (as nbgrader collect checks)

    [defaults]                    # for every assignment below (each key optional)
    attempts_per_hour = 4
    attempts_per_day = 20

    [assignments.ps1_parameters]
    enabled = true                # default true for a listed assignment; unlisted ones are off
    attempts_per_hour = 3         # graded submissions a student gets per sliding hour ("unlimited" allowed)
    attempts_per_day = 10         # ... and per sliding 24 hours
    hidden_checks = "pass-fail"   # hidden checks show passed/failed and their message only; "as-graded": nbgrader's feedback
    late = "keep-on-time"         # a late submission gets feedback, the gradebook keeps the last on-time grade;
                                  # "penalty": it is recorded, nbgrader's late-submission plugin applies its penalty
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["AssignmentRules", "ServiceSettings", "load_settings", "SETTINGS_FILE", "SettingsError", "parse_settings"]

SETTINGS_FILE = "grading_service.toml"
HIDDEN_CHOICES = ("pass-fail", "as-graded")
LATE_CHOICES = ("keep-on-time", "penalty")
UNLIMITED = "unlimited"


class SettingsError(ValueError):
    r"""``grading_service.toml`` is wrong: the message names the file, the key and what is allowed.

    >>> try:
    ...     parse_settings("assignments.ps1_parameters.attempt_per_hour = 3")
    ... except SettingsError as exc:
    ...     print(str(exc).replace("; ", ";\n"))
    grading_service.toml [assignments.ps1_parameters]: unknown setting 'attempt_per_hour';
    the settings are attempts_per_day, attempts_per_hour, enabled, hidden_checks, late
    """


@dataclass(frozen=True)
class AssignmentRules:
    """One assignment's rules; ``None`` for a limit means unlimited.

    >>> rules = AssignmentRules(attempts_per_day=None)
    >>> rules.attempts_per_hour, rules.attempts_per_day, rules.hidden_checks, rules.late
    (4, None, 'pass-fail', 'keep-on-time')
    """

    enabled: bool = True
    attempts_per_hour: int | None = 4
    attempts_per_day: int | None = 20
    hidden_checks: str = "pass-fail"
    late: str = "keep-on-time"


@dataclass(frozen=True)
class ServiceSettings:
    """The whole file: each assignment's rules, and whether a submission must belong to the account it names.

    >>> settings = ServiceSettings({"ps1_parameters": AssignmentRules(), "ps2": AssignmentRules(enabled=False)})
    >>> [settings.rules(name) is not None for name in ("ps1_parameters", "ps2", "ps3")]
    [True, False, False]
    """

    assignments: dict[str, AssignmentRules] = field(default_factory=dict)
    check_owner: bool = True

    def rules(self, assignment: str) -> AssignmentRules | None:
        """The rules of an assignment graded on submit, or None when it is not."""
        found = self.assignments.get(assignment)
        return found if found is not None and found.enabled else None


def _limit(where: str, key: str, value: object) -> int | None:
    if value == UNLIMITED:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(f"{where}: {key} must be a positive whole number or {UNLIMITED!r}, got {value!r}")
    return value


def _rules(where: str, table: object, base: AssignmentRules) -> AssignmentRules:
    if not isinstance(table, dict):
        raise SettingsError(f"{where} must be a table of settings, got {table!r}")
    known = set(AssignmentRules.__dataclass_fields__)
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingsError(f"{where}: unknown setting {unknown[0]!r}; the settings are {', '.join(sorted(known))}")
    values = dict(base.__dict__)
    for key, value in table.items():
        if key == "enabled":
            if not isinstance(value, bool):
                raise SettingsError(f"{where}: enabled must be true or false, got {value!r}")
        elif key.startswith("attempts_"):
            value = _limit(where, key, value)
        else:
            choices = HIDDEN_CHOICES if key == "hidden_checks" else LATE_CHOICES
            if value not in choices:
                raise SettingsError(f"{where}: {key} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        values[key] = value
    return AssignmentRules(**values)


def parse_settings(text: str, where: str = SETTINGS_FILE) -> ServiceSettings:
    """Settings from TOML text; :class:`SettingsError` naming the problem.

    >>> settings = parse_settings('''
    ... [defaults]
    ... attempts_per_hour = 3
    ... [assignments.ps1_parameters]
    ... attempts_per_day = "unlimited"
    ... ''')
    >>> rules = settings.rules("ps1_parameters")
    >>> rules.attempts_per_hour, rules.attempts_per_day
    (3, None)
    >>> try:
    ...     parse_settings("assignments.ps1_parameters.hidden_checks = 'show'")
    ... except SettingsError as exc:
    ...     print(exc)
    grading_service.toml [assignments.ps1_parameters]: hidden_checks must be one of 'pass-fail', 'as-graded', got 'show'
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{where} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"service", "defaults", "assignments"})
    if unknown:
        raise SettingsError(
            f"{where}: unknown table [{unknown[0]}]; the tables are [service], [defaults], [assignments.NAME]"
        )
    service = data.get("service", {})
    if not isinstance(service, dict) or set(service) - {"check_owner"}:
        raise SettingsError(f"{where}: [service] takes only check_owner = true/false, got {service!r}")
    check_owner = service.get("check_owner", True)
    if not isinstance(check_owner, bool):
        raise SettingsError(f"{where}: [service] check_owner must be true or false, got {check_owner!r}")
    defaults = _rules(f"{where} [defaults]", data.get("defaults", {}), AssignmentRules())
    assignments = data.get("assignments", {})
    if not isinstance(assignments, dict):
        raise SettingsError(f"{where}: [assignments] must hold one table per assignment ([assignments.ps1_parameters])")
    rules = {name: _rules(f"{where} [assignments.{name}]", t, defaults) for name, t in assignments.items()}
    return ServiceSettings(rules, check_owner)


def load_settings(course: str | Path) -> ServiceSettings:
    r"""The course's ``grading_service.toml``; no file: nothing is graded on submit.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as course:
    ...     print(load_settings(course))
    ...     _ = Path(course, SETTINGS_FILE).write_text("[service]\ncheck_owner = false\n[assignments.ps1_parameters]\n")
    ...     print(load_settings(course).check_owner, list(load_settings(course).assignments))
    ServiceSettings(assignments={}, check_owner=True)
    False ['ps1_parameters']
    """
    path = Path(course) / SETTINGS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ServiceSettings()
    return parse_settings(text, str(path))
