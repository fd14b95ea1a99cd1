-- The members' phones' downlink (issue 25, docs/HANDHELD_API.md "Downlink"): what the command
-- center sends to a member's terminal (a case notice or a task on gcc/v1/terminal/<id>/notice and
-- …/task, an announcement on gcc/v1/org/<code>/announcement) is written here once per enrolled
-- phone of that member by the handheld bridge (handheld/bridge.py, which acknowledges the MQTT
-- message only after this commit), and waits until that phone acknowledges it. `key` is the
-- message's own id (notice_id, task_id, announcement_id): a redelivered downlink is not written
-- twice. Acknowledged rows stay (the key keeps a late redelivery out) until retention takes them.
create table handheld_outbox (
    seq         bigint      generated always as identity primary key,
    device_id   text        not null,             -- member_devices.device_id of a phone (kind 'handheld')
    kind        text        not null check (kind in ('notice', 'task', 'announcement')),
    key         text        not null check (length(key) between 1 and 64),
    body        jsonb       not null,             -- as it came on the wire
    created_at  timestamptz not null default now(),
    acked_at    timestamptz,
    constraint handheld_outbox_key unique (device_id, kind, key)
);
-- a phone's unacknowledged items, oldest first (GET /outbox, a stream's first items)
create index handheld_outbox_unacked on handheld_outbox (device_id, seq) where acked_at is null;

-- One notification per inserting statement, on commit: the payload names the phones that got
-- something (comma-separated), or is empty when they would not fit in a notification (then every
-- open stream looks). The device-facing server's one listener wakes those phones' streams.
create function handheld_outbox_wake() returns trigger language plpgsql as $$
declare devices text;
begin
    select string_agg(distinct device_id, ',') into devices from new_rows;
    if devices is null then
        return null;
    end if;
    perform pg_notify('handheld_outbox', case when length(devices) <= 7000 then devices else '' end);
    return null;
end $$;
create trigger handheld_outbox_wake after insert on handheld_outbox
    referencing new table as new_rows for each statement execute function handheld_outbox_wake();
