-- The outbox of case notices to terminals (telemetry/notices.py): written in the transaction that
-- changes the case, so a notice exists exactly when its change does; the cases engine publishes
-- each over MQTT (QoS 1) and marks it sent once the broker has acknowledged it (at least once:
-- the notice id travels with it, and terminals keep the ids they have seen).
create table case_notices (
    id           bigint      generated always as identity primary key,
    case_id      text        not null references cases (case_id),
    terminal_id  text        not null,
    kind         text        not null,
    time         timestamptz not null,
    body         jsonb       not null,
    created_at   timestamptz not null default now(),
    sent_at      timestamptz,
    attempts     integer     not null default 0
);
create index case_notices_unsent on case_notices (id) where sent_at is null;
create index case_notices_case on case_notices (case_id, id);

create function case_notices_wake() returns trigger language plpgsql as $$
begin
    perform pg_notify('case_notice', '');
    return null;
end $$;
create trigger case_notices_wake after insert on case_notices
    for each statement execute function case_notices_wake();
