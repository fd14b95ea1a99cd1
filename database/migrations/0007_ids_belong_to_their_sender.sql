-- An alarm, report or task id is valid only for the device that first used it (issue 9: one
-- gateway sent `cleared` for another building's alarm id, one terminal could take another's
-- report id first and hide its report). The ingest claims each id for its sender in message_ids
-- before storing; a message for an id another device owns is a dead letter (foreign_id).
create table message_ids (
    kind        text        not null check (kind in ('alarm', 'report', 'task')),
    id          text        not null,
    device      text        not null,      -- the sensor (alarms) or terminal (reports, tasks)
    first_seen  timestamptz not null default now(),
    primary key (kind, id)
);

-- The natural keys name the device too, so no other device's row can ever collide with a
-- device's own. (With TimescaleDB's community edition, chunks compressed by its policy must be
-- decompressed before this migration; the Apache edition does not compress.)
alter table device_alarms drop constraint device_alarms_key;
alter table device_alarms add constraint device_alarms_key unique (sensor_id, alarm_id, state, time);
alter table incident_reports drop constraint incident_reports_key;
alter table incident_reports add constraint incident_reports_key unique (terminal_id, report_id, time);
alter table task_acks drop constraint task_acks_key;
alter table task_acks add constraint task_acks_key unique (terminal_id, task_id, action, time);

-- What was stored before: each id belongs to its first sender.
insert into message_ids (kind, id, device, first_seen)
select distinct on (alarm_id) 'alarm', alarm_id, sensor_id, time from device_alarms order by alarm_id, time
on conflict do nothing;
insert into message_ids (kind, id, device, first_seen)
select distinct on (report_id) 'report', report_id, terminal_id, time from incident_reports order by report_id, time
on conflict do nothing;
insert into message_ids (kind, id, device, first_seen)
select distinct on (task_id) 'task', task_id, terminal_id, time from task_acks order by task_id, time
on conflict do nothing;
