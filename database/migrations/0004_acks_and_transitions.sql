-- The rest of what terminals and gateways send: answers to dispatched tasks, gateway online /
-- offline, and OwnTracks region transitions. Every accepted message has a home.

create table task_acks (
    time         timestamptz not null,
    task_id      text        not null,
    terminal_id  text        not null,
    action       text        not null check (action in ('accepted', 'rejected', 'arrived', 'done')),
    note         text,
    received_at  timestamptz not null default now(),
    constraint task_acks_key unique (task_id, action, time)
);
select create_hypertable('task_acks', by_range('time', interval '30 days'));
create index task_acks_task on task_acks (task_id, time desc);

create table gateway_status (
    time         timestamptz not null,
    gateway_id   text        not null,
    state        text        not null check (state in ('online', 'offline')),
    grid_code    char(15),
    received_at  timestamptz not null default now(),
    constraint gateway_status_key unique (gateway_id, time)
);
select create_hypertable('gateway_status', by_range('time', interval '30 days'));

create table region_transitions (
    time         timestamptz not null,
    terminal_id  text        not null,
    event        text        not null check (event in ('enter', 'leave')),
    region       text,
    lat          double precision,
    lon          double precision,
    accuracy_m   real,
    grid_code    char(15),
    received_at  timestamptz not null default now(),
    constraint region_transitions_key unique (terminal_id, event, time)
);
select create_hypertable('region_transitions', by_range('time', interval '30 days'));

-- SenML records may carry a sum (e.g. a meter's running total) beside or instead of a value.
alter table sensor_readings add column value_sum double precision;
