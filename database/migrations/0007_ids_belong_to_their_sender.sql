-- An alarm, report or task id is its device's: identity is (device, id) everywhere (issue 9: one
-- gateway sent `cleared` for another building's alarm id; one terminal could take another's report
-- id first and hide its report). No id belongs city-wide to whoever used it first: ids are
-- predictable, so a first-sender claim would let a thief pre-claim a victim's next id and turn the
-- victim's real alarm or report into a dead letter.

-- The natural keys name the device too, so no other device's row can ever collide with a
-- device's own. (With TimescaleDB's community edition, chunks compressed by its policy must be
-- decompressed before this migration; the Apache edition does not compress.)
alter table device_alarms drop constraint device_alarms_key;
alter table device_alarms add constraint device_alarms_key unique (sensor_id, alarm_id, state, time);
alter table incident_reports drop constraint incident_reports_key;
alter table incident_reports add constraint incident_reports_key unique (terminal_id, report_id, time);
alter table task_acks drop constraint task_acks_key;
alter table task_acks add constraint task_acks_key unique (terminal_id, task_id, action, time);

-- The one check that looks across devices (ingest.clears): a `cleared` for an alarm id its own
-- sensor never raised while another sensor has raised it is a forged clear (foreign_id).
create index device_alarms_alarm_id on device_alarms (alarm_id);

-- An acknowledgement is of one sensor's alarm: two sensors may use the same alarm id.
alter table alarm_acknowledgements drop constraint alarm_acknowledgements_pkey;
alter table alarm_acknowledgements add primary key (sensor_id, alarm_id);
