-- Cases (issue 11): what reports, alarms, SOS and hotline calls become; every change an event row;
-- the deadlines stored (so "overdue" is an indexed comparison); escalation steps fired once each.
-- The rules live in cases/ (pure Python); these tables keep what they decided. case_events takes
-- over from incident_events (0002), which nothing ever wrote.
drop table incident_events;

-- Time limits per (category, stage, urgency), versioned: a case keeps the version it started with.
-- '*' is any category or urgency. Version 1 is seeded from cases/limits.py (python -m cases seed).
create table time_limits (
    version     integer     not null,
    category    text        not null,
    stage       text        not null check (stage in ('register', 'dispatch', 'accept', 'handle', 'verify', 'close')),
    urgency     text        not null check (urgency in ('urgent', 'normal', '*')),
    amount      double precision not null check (amount > 0),
    unit        text        not null check (unit in ('minutes', 'working_hours', 'working_days')),
    created_at  timestamptz not null default now(),
    created_by  text        not null,
    primary key (version, category, stage, urgency)
);

-- The working calendar: one row per day, from the State Council's notices (chinesecalendar),
-- provisional Mon-Fri for a year without a notice yet, or an admin's override.
create table work_calendar (
    day         date        primary key,
    workday     boolean     not null,
    name        text        not null default '',
    source      text        not null check (source in ('notice', 'provisional', 'admin')),
    updated_at  timestamptz not null default now(),
    updated_by  text        not null
);

create sequence case_numbers;        -- C<yyyymmdd>-<n>: the day it opened, and a number

create table cases (
    case_id          text        primary key,
    category         text        not null,
    urgency          text        not null check (urgency in ('urgent', 'normal')),
    source           text        not null check (source in ('report', 'alarm', 'sos', 'hotline')),
    source_key       text,                      -- 'alarm:<sensor>/<type>', 'report:<terminal>/<id>', 'sos:<terminal>'
    grid_code        char(15),
    org_code         text        not null,      -- the org unit responsible (its grid, or a higher level)
    state            text        not null check (state in ('reported', 'registered', 'refused', 'dispatched',
                                     'accepted', 'handling', 'handled', 'verified', 'closed', 'evaluated', 'suspended')),
    title            text        not null default '',
    place            text        not null default '',
    lat              double precision,
    lon              double precision,
    opened_at        timestamptz not null,
    limits_version   integer     not null,
    stage_seq        integer     not null default 0,
    stage_started_at timestamptz,
    deadline_original timestamptz,
    deadline         timestamptz,
    warn_at          timestamptz,
    handler          text,
    suspended_from   text,
    pending_extension jsonb,
    rework_count     integer     not null default 0,
    return_count     integer     not null default 0,
    extension_count  integer     not null default 0,
    reopen_count     integer     not null default 0,
    escalation_level text,
    acknowledged_by  text,
    rating           smallint check (rating between 1 and 5),
    closed_at        timestamptz,
    -- where the escalation engine goes on from: the stage clock, the next step and repeat, and when
    ladder_seq       integer     not null default 0,
    ladder_step      integer     not null default 0,
    ladder_repeat    integer     not null default 0,
    next_escalation_at timestamptz,
    updated_at       timestamptz not null default now()
);
create index cases_next_escalation on cases (next_escalation_at) where next_escalation_at is not null;
create index cases_open_deadline on cases (deadline) where deadline is not null;
create index cases_org on cases (org_code text_pattern_ops, state);
create index cases_grid on cases (grid_code, state);
-- one open case per device and alarm type (ThingsBoard's rule); a cleared alarm leaves it open
create unique index cases_one_open_per_source on cases (source_key)
    where source_key is not null and state not in ('refused', 'closed', 'evaluated');

-- Every report and alarm a case was made of (several reports merge into one case).
create table case_sources (
    kind        text        not null check (kind in ('report', 'alarm', 'sos')),
    key         text        not null,          -- the source row's natural key
    case_id     text        not null references cases (case_id),
    time        timestamptz not null,
    linked      text        not null check (linked in ('opened', 'merged', 'cleared', 'raised_again')),
    primary key (kind, key)
);
create index case_sources_case on case_sources (case_id);

-- Every change of a case: who, when, from -> to, why. Append-only.
create table case_events (
    id          bigint      generated always as identity primary key,
    case_id     text        not null references cases (case_id),
    time        timestamptz not null,
    command     text        not null,
    actor_kind  text        not null check (actor_kind in ('user', 'terminal', 'system')),
    actor       text        not null,
    roles       text[]      not null,
    from_state  text,
    to_state    text        not null,
    reason      text,
    detail      jsonb       not null default '{}'
);
create index case_events_case on case_events (case_id, id);
create index case_events_time on case_events (time desc);
create trigger case_events_append_only before update or delete on case_events
    for each row execute function audit_log_is_append_only();
create trigger case_events_no_truncate before truncate on case_events
    for each statement execute function audit_log_is_append_only();

-- Each escalation step fired, once: the key is the step itself.
create table case_escalations (
    case_id     text        not null references cases (case_id),
    stage_seq   integer     not null,
    step        integer     not null,
    repeat      integer     not null,
    stage       text        not null,
    level       text        not null check (level in ('grid', 'community', 'street', 'district')),
    org_code    text        not null,
    due_at      timestamptz not null,
    fired_at    timestamptz not null,
    primary key (case_id, stage_seq, step, repeat)
);
create index case_escalations_org on case_escalations (org_code text_pattern_ops, fired_at desc);

-- What the intake has still to look at: a row for every report, alarm and SOS status the ingest
-- stores, written in the ingest's own transaction by the triggers below (so none is missed), and
-- taken off in the intake's transaction that makes or updates its case.
create table case_inbox (
    id          bigint      generated always as identity primary key,
    kind        text        not null check (kind in ('report', 'alarm', 'sos')),
    key         text        not null,
    time        timestamptz not null,
    added_at    timestamptz not null default now(),
    attempts    integer     not null default 0,        -- failed intakes; at 3 it is held, as evidence
    last_error  text
);

-- One function per table: TimescaleDB fires the triggers on the chunks, so tg_table_name is a
-- chunk's name, never the hypertable's. Each only inserts: nothing here can refuse the ingest's row.
create function case_inbox_report() returns trigger language plpgsql security definer
    set search_path = public, pg_temp as $$
begin
    insert into case_inbox (kind, key, time) values ('report', new.terminal_id || '/' || new.report_id, new.time);
    perform pg_notify('case_inbox', '');
    return null;
end $$;
create function case_inbox_alarm() returns trigger language plpgsql security definer
    set search_path = public, pg_temp as $$
begin
    insert into case_inbox (kind, key, time)
        values ('alarm', new.sensor_id || '/' || new.alarm_id || '/' || new.state, new.time);
    perform pg_notify('case_inbox', '');
    return null;
end $$;
create function case_inbox_sos() returns trigger language plpgsql security definer
    set search_path = public, pg_temp as $$
begin
    insert into case_inbox (kind, key, time) values ('sos', new.terminal_id, new.time);
    perform pg_notify('case_inbox', '');
    return null;
end $$;
create trigger incident_reports_to_cases after insert on incident_reports
    for each row execute function case_inbox_report();
create trigger device_alarms_to_cases after insert on device_alarms
    for each row execute function case_inbox_alarm();
create trigger terminal_status_to_cases after insert on terminal_status
    for each row when (new.sos) execute function case_inbox_sos();
