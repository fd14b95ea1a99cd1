-- The assessment (issue 13): facts folded from the case event log (kpis/facts.py), kept once, and
-- rolled up per org unit, category and day (city time), maintained incrementally by the cases
-- engine (kpis/rollup.py). This is the path for TimescaleDB's Apache edition (what the tests run):
-- our own rollup tables; the community edition's continuous aggregates would serve the same
-- queries. Rates are sum(numerator) / sum(denominator) over these rows, never averages of averages.

-- Which cases have events the rollups have not folded yet: a row per case, written by a trigger in
-- the transaction that adds the event (so none is missed), taken off by the maintainer in the
-- transaction that folds it.
create table kpi_dirty (
    case_id     text        primary key
);
create function kpi_dirty_case() returns trigger language plpgsql security definer
    set search_path = public, pg_temp as $$
begin
    insert into kpi_dirty (case_id) values (new.case_id) on conflict do nothing;
    return null;
end $$;
create trigger case_events_to_kpis after insert on case_events
    for each row execute function kpi_dirty_case();
insert into kpi_dirty (case_id) select case_id from cases;     -- what happened before this migration

-- A case as the assessment sees it: where its fold stands (kpis.facts.CaseFacts).
create table case_facts (
    case_id          text        primary key references cases (case_id),
    org_code         text        not null,
    category         text        not null,
    opened_at        timestamptz not null,
    last_event_id    bigint      not null,
    handler          text,
    registered_at    timestamptz,
    dispatched_at    timestamptz,
    accepted_at      timestamptz,
    handled_at       timestamptz,
    closed_at        timestamptz,
    stage            text,
    stage_seq        integer     not null default 0,
    stage_started_at timestamptz,
    stage_deadline   timestamptz,
    stage_late       boolean     not null default false,
    due_day          date,
    closed           boolean     not null default false,
    late             boolean     not null default false,
    suspended        boolean     not null default false,
    extended         boolean     not null default false,
    refused          boolean     not null default false
);
-- the maintainer's sweep: running stages whose deadline passes with nobody acting
create index case_facts_running_deadline on case_facts (stage_deadline) where stage is not null and not stage_late;
create index case_facts_due on case_facts (due_day, org_code text_pattern_ops);

-- One row per stage clock that ended or went late: the raw facts the rollups sum.
create table case_stage_facts (
    case_id      text        not null references cases (case_id),
    stage_seq    integer     not null,
    stage        text        not null,
    org_code     text        not null,
    category     text        not null,
    started_at   timestamptz not null,
    deadline     timestamptz,
    ended_at     timestamptz,                -- null: past its deadline and still open
    ended_by     text,
    on_time      boolean,                    -- null: ended another way (not counted)
    counted_day  date,                       -- the day it counts on (its end, or its deadline when late)
    primary key (case_id, stage_seq)
);
create index case_stage_facts_day on case_stage_facts (counted_day, org_code text_pattern_ops);

-- The rollups: per day, org unit (the case's own, a grid or the level it was placed at: a higher
-- level sums its prefix) and category. Counters as kpis/facts.py names them.
create table kpi_daily (
    day                date    not null,
    org_code           text    not null,
    category           text    not null,
    registered         integer not null default 0,
    dispatched         integer not null default 0,
    handled            integer not null default 0,
    reworked           integer not null default 0,
    returned           integer not null default 0,
    closed             integer not null default 0,
    refused            integer not null default 0,
    reopened           integer not null default 0,
    extensions         integer not null default 0,
    suspensions        integer not null default 0,
    went_overdue       integer not null default 0,
    due                integer not null default 0,
    due_closed         integer not null default 0,
    due_on_time        integer not null default 0,
    assessable         integer not null default 0,
    due_suspended      integer not null default 0,
    due_extended       integer not null default 0,
    register_due       integer not null default 0,
    register_on_time   integer not null default 0,
    dispatch_due       integer not null default 0,
    dispatch_on_time   integer not null default 0,
    accept_due         integer not null default 0,
    accept_on_time     integer not null default 0,
    handle_due         integer not null default 0,
    handle_on_time     integer not null default 0,
    verify_due         integer not null default 0,
    verify_on_time     integer not null default 0,
    close_due          integer not null default 0,
    close_on_time      integer not null default 0,
    primary key (day, org_code, category)
);
create index kpi_daily_org on kpi_daily (org_code text_pattern_ops, day);

-- Durations per day, org unit, category and measure, as a log histogram (bin k: up to 1.1^k s).
create table kpi_durations (
    day        date             not null,
    org_code   text             not null,
    category   text             not null,
    measure    text             not null check (measure in ('register', 'dispatch', 'accept', 'handle', 'close')),
    bin        smallint         not null,
    n          integer          not null,
    total_s    double precision not null,
    primary key (day, org_code, category, measure, bin)
);
create index kpi_durations_org on kpi_durations (org_code text_pattern_ops, day);
