-- Emergency verification (紧急核实) on a case (issue 25, item 5): a dispatcher asks a member to
-- check a case raised by an alarm or an SOS (a case notice of kind 'check'), and the member's answer
-- (gcc/v1/terminal/<id>/alarm/check, telemetry/kinds/alarm_check.py) reaches the case through the
-- cases engine's inbox, as every other terminal message that changes a case does.

-- the terminals asked to check the case and not answered yet (cases.model.Case.checkers): only
-- they may answer; an answer takes its terminal off
alter table cases add column checkers text[] not null default '{}';

-- the answer names the case it was asked about (an SOS has no sensor and no alarm), or the alarm
-- as before (both sensor_id and alarm_id), or both; its photos are refs like a report's
alter table alarm_checks add column case_id text;
alter table alarm_checks add column photo_refs text[] not null default '{}';
alter table alarm_checks alter column sensor_id drop not null;
alter table alarm_checks alter column alarm_id drop not null;
alter table alarm_checks add constraint alarm_checks_names_what
    check ((sensor_id is null) = (alarm_id is null) and (case_id is not null or sensor_id is not null));
-- the natural key now names the case too; a null is a value like another (an answer about a case
-- sent twice is one row)
alter table alarm_checks drop constraint alarm_checks_key;
alter table alarm_checks add constraint alarm_checks_key
    unique nulls not distinct (terminal_id, case_id, sensor_id, alarm_id, time);
create index alarm_checks_case on alarm_checks (case_id, time desc) where case_id is not null;

-- every answer goes to the cases engine's inbox in the ingest's own transaction (as reports,
-- alarms, SOS and case updates do); one with no case to go to is skipped there, and stays here
alter table case_inbox drop constraint case_inbox_kind_check;
alter table case_inbox add constraint case_inbox_kind_check
    check (kind in ('report', 'alarm', 'sos', 'update', 'check'));

create function case_inbox_check() returns trigger language plpgsql security definer
    set search_path = public, pg_temp as $$
begin
    -- terminal / case / sensor / alarm (ids hold no '/'; an absent one is empty)
    insert into case_inbox (kind, key, time)
        values ('check', new.terminal_id || '/' || coalesce(new.case_id, '') || '/' || coalesce(new.sensor_id, '')
                         || '/' || coalesce(new.alarm_id, ''), new.time);
    perform pg_notify('case_inbox', '');
    return null;
end $$;
create trigger alarm_checks_to_cases after insert on alarm_checks
    for each row execute function case_inbox_check();
