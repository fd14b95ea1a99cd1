-- What people do on the screens. Every data-changing action of the dashboard (dashboard/commands.py)
-- and every refusal of one is a row here, written in the same transaction as the change itself.

create table audit_log (
    id              bigint generated always as identity primary key,
    time            timestamptz not null default now(),
    actor           text        not null,    -- the user (or 'demo' before logins exist)
    roles           text[]      not null,    -- the roles the actor held
    action          text        not null,    -- e.g. 'alarm.acknowledge'
    target          text,                    -- e.g. 'alarm:GAS-1f2e'
    scope_code      text,                    -- the org unit the target belongs to
    outcome         text        not null check (outcome in ('done', 'refused')),
    reason          text,                    -- why it was refused
    before          jsonb,
    after           jsonb,
    source_address  text
);
create index audit_log_time on audit_log (time desc);
create index audit_log_target on audit_log (target, time desc);

-- Append-only: the application can add rows, never change or remove them.
create function audit_log_is_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_log is append-only (% refused)', tg_op using errcode = 'insufficient_privilege';
end $$;
create trigger audit_log_append_only before update or delete on audit_log
    for each row execute function audit_log_is_append_only();
create trigger audit_log_no_truncate before truncate on audit_log
    for each statement execute function audit_log_is_append_only();

-- A person at the command center has seen a device alarm and taken it on (ThingsBoard's "ack'd").
-- Acknowledging does not clear an alarm: the device clears it, and a person verifies the case.
create table alarm_acknowledgements (
    alarm_id         text        primary key,
    sensor_id        text        not null,
    acknowledged_at  timestamptz not null,
    actor            text        not null,
    note             text
);
