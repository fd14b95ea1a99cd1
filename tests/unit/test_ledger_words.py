"""The ledger's words have one spelling (core.ledger): every check constraint of migration 0032
lists exactly an enum's values, each value has its label, and the restricted tags are tags."""
from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from core import ledger

MIGRATION = Path(__file__).resolve().parents[2] / "database" / "migrations" / "0032_ledger.sql"
RECORDS = ledger.values(ledger.RecordKind)

# (the column named in a check, the table it belongs to or None for every table) -> its vocabulary
CHECKS = {
    ("use", "houses"): ledger.values(ledger.HouseUse),
    ("relation", "residents"): ledger.values(ledger.Relation),
    ("gender", "residents"): ledger.values(ledger.Gender),
    ("registration", "residents"): ledger.values(ledger.Registration),
    ("tag", "resident_tags"): ledger.values(ledger.Tag),
    ("kind", "things"): ledger.values(ledger.ThingKind),
    ("state", "things"): ledger.values(ledger.ThingState),
    ("kind", "ledger_submissions"): ledger.values(ledger.SubmissionKind),
    ("state", "ledger_submissions"): ledger.values(ledger.SubmissionState),
    ("target_kind", "ledger_submissions"): RECORDS,
    ("record_kind", "ledger_changes"): RECORDS,
    ("channel", "ledger_changes"): ledger.values(ledger.Channel),
    ("action", "ledger_changes"): ledger.values(ledger.ChangeAction),
    ("subject_kind", "case_subjects"): RECORDS,
    ("permission", "ledger_grants"): ledger.values(ledger.Permission),
}


def _checks() -> dict[tuple[str, str], list[str]]:
    """Each `column in ('a', 'b', …)` check of the migration, by (column, table)."""
    sql = MIGRATION.read_text()
    found = {}
    for table, body in re.findall(r"create table (\w+) \((.*?)\n\);", sql, re.S):
        for column, listed in re.findall(r"check \((\w+) in \(([^)]*)\)\)", body):
            found[(column, table)] = re.findall(r"'([^']*)'", listed)
    return found


def test_every_check_of_the_migration_lists_its_vocabulary_exactly():
    assert _checks() == CHECKS


@pytest.mark.parametrize("vocabulary, labels", [
    (ledger.HouseUse, ledger.HOUSE_USE_LABELS), (ledger.Gender, ledger.GENDER_LABELS),
    (ledger.Registration, ledger.REGISTRATION_LABELS), (ledger.Relation, ledger.RELATION_LABELS),
    (ledger.Tag, ledger.TAG_LABELS), (ledger.ThingKind, ledger.THING_KIND_LABELS),
    (ledger.ThingState, ledger.THING_STATE_LABELS), (ledger.RecordKind, ledger.RECORD_KIND_LABELS),
    (ledger.SubmissionKind, ledger.SUBMISSION_KIND_LABELS),
    (ledger.SubmissionState, ledger.SUBMISSION_STATE_LABELS), (ledger.Permission, ledger.PERMISSION_LABELS),
    (ledger.Channel, ledger.CHANNEL_LABELS), (ledger.ChangeAction, ledger.CHANGE_ACTION_LABELS),
])
def test_each_value_has_an_english_and_a_chinese_label(vocabulary: type[StrEnum], labels):
    assert set(labels) == set(vocabulary)
    assert all(label.en and label.zh for label in labels.values())


def test_restricted_and_help_first_tags_are_tags_and_apart():
    assert ledger.RESTRICTED_TAGS.issubset(ledger.Tag)
    assert len(ledger.RESTRICTED_TAGS) < len(ledger.Tag)
    assert not ledger.RESTRICTED_TAGS & set(ledger.NEEDS_HELP_FIRST)
