"""Bulk loading of the grid's ledger (基础数据): rows already made (personal fields already sealed
by the caller, bytea as `bytea(…)` text: this module never sees one in clear) copied in with COPY, table by table in the
order their foreign keys need, on the caller's cursor and in the caller's transaction.

`reserve_ids(cur)` locks the people tables against other writers and says where their identity
columns go on; the caller numbers its rows from there, writes any number of `LedgerRows` batches
(`write(cur, rows)`: a batch at a time, so a generator of two million residents never holds them
all), then `finish_ids(cur, ids)` moves the sequences past what was used. COPY writes values into
a `generated always` identity column as given (it does not enforce ALWAYS), which is what lets a
household name its head and a resident its household before either is stored.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, fields

HOUSE_COLUMNS = ["house_id", "building_id", "grid_code", "entrance", "floor", "number", "area_m2", "use"]
HOUSEHOLD_COLUMNS = ["household_id", "house_id", "head_id"]
RESIDENT_COLUMNS = ["resident_id", "household_id", "grid_code", "relation", "name", "gender", "birth_date",
                    "id_number_sealed", "id_number_index", "id_number_masked", "phone_sealed", "phone_index",
                    "phone_masked", "registration", "moved_in", "moved_out"]
TAG_COLUMNS = ["resident_id", "tag", "since"]
THING_COLUMNS = ["thing_id", "kind", "grid_code", "building_id", "position", "owner", "state"]   # position: EWKT
BUILDING_COLUMNS = ["building_id", "entrances", "footprint"]                                    # footprint: EWKT
UNIT_COLUMNS = ["unit_id", "building_id", "licence", "contact_name", "contact_phone_sealed", "contact_phone_index",
                "contact_phone_masked", "fire_key_unit"]
ORGANIZATION_COLUMNS = ["org_id", "building_id", "contact_name", "contact_phone_sealed", "contact_phone_index",
                        "contact_phone_masked"]
CHANGE_COLUMNS = ["record_kind", "record_id", "version", "action", "changed_by", "channel", "after"]
LEDGER_TABLES = ("ledger_changes", "case_subjects", "ledger_submissions", "resident_tags", "residents", "households",
                 "houses", "things")
BULK_TABLES = ("houses", "households", "residents", "resident_tags", "things")
_IDENTITIES = (("houses", "house_id"), ("households", "household_id"), ("residents", "resident_id"))


@dataclass
class LedgerRows:
    """One batch of the ledger's rows, each a tuple in its table's column order above."""
    buildings: list[tuple] = field(default_factory=list)
    houses: list[tuple] = field(default_factory=list)
    households: list[tuple] = field(default_factory=list)
    residents: list[tuple] = field(default_factory=list)
    tags: list[tuple] = field(default_factory=list)
    things: list[tuple] = field(default_factory=list)
    units: list[tuple] = field(default_factory=list)
    organizations: list[tuple] = field(default_factory=list)
    changes: list[tuple] = field(default_factory=list)

    def clear(self) -> None:
        for f in fields(self):
            getattr(self, f.name).clear()


@dataclass
class IdBlock:
    """The next free id of each people table (the caller takes them in order)."""
    house: int
    household: int
    resident: int


def bytea(value: bytes) -> str:
    """A bytea value as `copy_rows` takes it (PostgreSQL's hex form)."""
    return "\\x" + value.hex()


def copy_rows(cur, table: str, columns: list[str], rows: list[tuple]) -> None:
    """COPY rows into `table` as CSV, in one go: None is NULL (so no value may be an empty string:
    every text of the ledger has a length), a bytea is given as `bytea(…)`, a bool, a date or a
    number as Python writes it. Values are written as they are, with no conversion per value: at
    two million residents a Python call per field cost more than the COPY itself."""
    if not rows:
        return
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    buf.seek(0)
    cur.copy_expert(f"copy {table} ({', '.join(columns)}) from stdin with (format csv)", buf)


def reserve_ids(cur) -> IdBlock:
    """Lock houses, households and residents against other writers until the transaction ends
    (readers go on), and give the next id of each: past both its sequence and its rows."""
    cur.execute("lock table houses, households, residents in share row exclusive mode")
    nexts = []
    for table, column in _IDENTITIES:
        cur.execute(f"select pg_get_serial_sequence('{table}', '{column}')")
        sequence = cur.fetchone()[0]
        cur.execute(f"select case when is_called then last_value else last_value - 1 end from {sequence}")
        used = cur.fetchone()[0]
        cur.execute(f"select coalesce(max({column}), 0) from {table}")
        nexts.append(max(used, cur.fetchone()[0]) + 1)
    return IdBlock(*nexts)


def finish_ids(cur, ids: IdBlock) -> None:
    """Move each sequence past the ids taken (`ids`: the next free ones), so later inserts go on."""
    for (table, column), next_id in zip(_IDENTITIES, (ids.house, ids.household, ids.resident), strict=True):
        if next_id > 1:
            cur.execute(f"select setval(pg_get_serial_sequence('{table}', '{column}'), %s)", (next_id - 1,))


def write(cur, rows: LedgerRows) -> None:
    """One batch, in foreign-key order (a household's head is checked at commit: deferred)."""
    copy_rows(cur, "houses", HOUSE_COLUMNS, rows.houses)
    copy_rows(cur, "households", HOUSEHOLD_COLUMNS, rows.households)
    copy_rows(cur, "residents", RESIDENT_COLUMNS, rows.residents)
    copy_rows(cur, "resident_tags", TAG_COLUMNS, rows.tags)
    copy_rows(cur, "things", THING_COLUMNS, rows.things)
    _update_from(cur, "buildings", "building_id", BUILDING_COLUMNS, rows.buildings,
                 "entrances smallint, footprint geometry(Polygon, 4326)")
    _update_from(cur, "units", "unit_id", UNIT_COLUMNS, rows.units,
                 "building_id text, licence text, contact_name text, contact_phone_sealed bytea, "
                 "contact_phone_index bytea, contact_phone_masked text, fire_key_unit boolean")
    _update_from(cur, "organizations", "org_id", ORGANIZATION_COLUMNS, rows.organizations,
                 "building_id text, contact_name text, contact_phone_sealed bytea, contact_phone_index bytea, "
                 "contact_phone_masked text")
    copy_rows(cur, "ledger_changes", CHANGE_COLUMNS, rows.changes)


def _update_from(cur, table: str, key: str, columns: list[str], rows: list[tuple], types: str) -> None:
    """Set columns of existing rows: COPY into a temporary table, then one UPDATE joined on `key`."""
    if not rows:
        return
    staging = f"ledger_load_{table}"
    cur.execute(f"create temporary table if not exists {staging} ({key} text primary key, {types}) "
                "on commit drop")
    cur.execute(f"truncate {staging}")
    copy_rows(cur, staging, columns, rows)
    assignments = ", ".join(f"{c} = s.{c}" for c in columns if c != key)
    cur.execute(f"update {table} t set {assignments} from {staging} s where t.{key} = s.{key}")


def drop_secondary_indexes(cur, tables: tuple[str, ...] = BULK_TABLES) -> list[str]:
    """Drop the indexes of `tables` that back no constraint, in the caller's transaction (an
    ACCESS EXCLUSIVE lock on each table until it ends), and give their definitions for
    `create_indexes`. For a bulk load into empty tables: two million residents inserted into seven
    indexes, two of them keyed by random HMACs, spend most of the load in random index pages; an
    index built after the COPY sorts once. The definitions are read from the catalogue, so the
    schema stays the migrations' alone."""
    cur.execute("""
        select c.relname, pg_get_indexdef(x.indexrelid)
          from pg_index x join pg_class c on c.oid = x.indexrelid join pg_class t on t.oid = x.indrelid
         where t.relname = any(%s) and t.relnamespace = 'public'::regnamespace
           and not exists (select 1 from pg_constraint k where k.conindid = x.indexrelid)
         order by c.relname""", (list(tables),))
    found = cur.fetchall()
    for name, _ in found:
        cur.execute(f'drop index "{name}"')
    return [definition for _, definition in found]


def create_indexes(cur, definitions: list[str]) -> None:
    """Build again the indexes `drop_secondary_indexes` dropped (with more memory to sort in).
    The deferred checks (a household's head) run first: PostgreSQL builds no index on a table
    with checks still pending."""
    if not definitions:
        return
    cur.execute("set constraints all immediate")
    cur.execute("set local maintenance_work_mem = '256MB'")
    for definition in definitions:
        cur.execute(definition)


def ledger_is_empty(cur) -> bool:
    """Whether no house and no resident is stored (a demo ledger is loaded only into an empty one)."""
    cur.execute("select not exists (select 1 from houses) and not exists (select 1 from residents)")
    return cur.fetchone()[0]


def clear_ledger(cur) -> None:
    """Remove every ledger record (people, houses, parts, history, the review queue) and the ledger
    fields of buildings, units and organisations: the city's own data stays."""
    cur.execute(f"truncate {', '.join(LEDGER_TABLES)}")
    cur.execute("update buildings set footprint = null, entrances = 1 where footprint is not null or entrances <> 1")
    cur.execute("update units set building_id = null, licence = null, contact_name = null, "
                "contact_phone_sealed = null, contact_phone_index = null, contact_phone_masked = null, "
                "fire_key_unit = false "
                "where licence is not null or contact_name is not null or building_id is not null")
    cur.execute("update organizations set building_id = null, contact_name = null, contact_phone_sealed = null, "
                "contact_phone_index = null, contact_phone_masked = null "
                "where contact_name is not null or building_id is not null")
