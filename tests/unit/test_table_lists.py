"""The tables the ingest writes are its message kinds' (telemetry.kinds, one per kind): the database
roles' grants and the retention read them from there, so a new kind's table is granted and kept."""
from database.roles import INGEST_TABLES
from database.timescale import HYPERTABLES
from telemetry.kinds import TABLES


def test_the_ingest_grants_name_exactly_the_tables_of_its_message_kinds_and_the_dead_letters():
    assert set(INGEST_TABLES) == set(TABLES) | {"dead_letters"}
    assert len(INGEST_TABLES) == len(set(INGEST_TABLES))


def test_every_table_the_ingest_writes_is_a_hypertable_with_retention():
    assert set(INGEST_TABLES) | {"member_status"} == set(HYPERTABLES)


def test_every_retention_setting_agrees_with_its_kinds_declaration():
    """A kind declares how long its rows are kept; GCC_RETENTION_<TABLE>_DAYS may override it, but the
    setting's default is the kind's (one answer to "how long do we keep fixes?")."""
    from config.settings import Settings
    from database.timescale import retention_from_settings

    defaults = Settings.model_fields
    for table, kind in TABLES.items():
        setting = defaults.get(f"retention_{table}_days")
        if setting is not None:
            assert setting.default == kind.retention_days, table
    assert retention_from_settings(Settings(_env_file=None))["positions"].days == TABLES["positions"].retention_days
