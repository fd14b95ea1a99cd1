"""Org-code containment in SQL (migration 0026's org_contains) says what core.orgcodes.contains
says, and is inlined into the query: a scoped query keeps the index `like '<code>%'` had."""
from __future__ import annotations

import psycopg2
import pytest

from core.orgcodes import contains

CODES = ["350102", "350102001", "350102001001", "350102001001001", "350102001002001", "350102002", "350103",
         "350103001001001"]


@pytest.fixture
def cur(settings):
    conn = psycopg2.connect(settings.pg_dsn)
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.rollback()
        conn.close()


def test_sql_containment_agrees_with_python_for_text_and_grid_codes(cur):
    pairs = [(scope, code) for scope in ["", *CODES] for code in CODES]
    cur.execute("select s, c, org_contains(s, c), org_contains(s, c::char(15)) "
                "from unnest(%s::text[], %s::text[]) as p(s, c)", ([s for s, _ in pairs], [c for _, c in pairs]))
    for scope, code, as_text, as_grid in cur.fetchall():
        assert as_text is contains(scope, code), (scope, code)
        if len(code) == 15:
            assert as_grid is contains(scope, code), (scope, code)
    cur.execute("select org_contains('350102', null), org_contains('', null)")
    assert cur.fetchone() == (None, None)           # a null code lies in no unit (a where clause drops it)


@pytest.mark.parametrize("table, column, index", [("cases", "org_code", "cases_org"),
                                                  ("members", "grid_code", "members_grid")])
def test_a_scoped_query_is_planned_on_the_index_like_a_prefix_pattern(cur, table, column, index):
    cur.execute("set local enable_seqscan = off")
    cur.execute(f"explain select 1 from {table} where org_contains(%s, {column})", ("350102001",))
    plan = "\n".join(row[0] for row in cur.fetchall())
    assert "org_contains" not in plan                                       # inlined
    assert index in plan and "~~ '350102001%'" in plan, plan                # the folded pattern, on the index
