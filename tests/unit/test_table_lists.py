"""The tables the ingest writes are named in the ingest's kinds (one per message kind) and in the
database roles' grants; the two lists must agree, or a new kind's table is written without a grant."""
from database.roles import INGEST_TABLES
from database.timescale import HYPERTABLES
from ingest.kinds import TABLES


def test_the_ingest_grants_name_exactly_the_tables_of_its_message_kinds_and_the_dead_letters():
    assert set(INGEST_TABLES) == set(TABLES) | {"dead_letters"}
    assert len(INGEST_TABLES) == len(set(INGEST_TABLES))


def test_every_table_the_ingest_writes_is_a_hypertable_with_retention():
    assert set(INGEST_TABLES) | {"member_status"} == set(HYPERTABLES)
