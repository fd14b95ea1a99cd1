-- Alarms checked on site (紧急核实): what a member found at a device alarm, from their terminal
-- (gcc/v1/terminal/<id>/alarm/check; the kind: telemetry/kinds/alarm_check.py), stored by the ingest.
create table alarm_checks (
    time         timestamptz not null,
    terminal_id  text        not null,
    member_id    text,
    grid_code    char(15),                   -- the member's home grid
    sensor_id    text        not null,       -- the alarm is (sensor_id, alarm_id)
    alarm_id     text        not null,
    outcome      text        not null check (outcome in ('confirmed', 'false_alarm', 'need_help')),
    note         text,
    photo_ref    text,
    received_at  timestamptz not null default now(),
    constraint alarm_checks_key unique (terminal_id, sensor_id, alarm_id, time)
);
select create_hypertable('alarm_checks', by_range('time', interval '30 days'));
create index alarm_checks_alarm on alarm_checks (sensor_id, alarm_id, time desc);
