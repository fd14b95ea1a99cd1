-- Announcements (通知公告, one of the handheld's six functions): a dispatcher's or leader's message
-- to every terminal of an org unit (a grid, community, street or district). The row is its own
-- outbox: written with its recipients (the terminals of the org unit's members at that moment),
-- published by the cases engine to gcc/v1/org/<code>/announcement (QoS 1, expiring when it does)
-- and marked sent once the broker has acknowledged it. Terminals send a read receipt, which the
-- ingest stores; a receipt counts only from a recipient.
create table announcements (
    id           bigint      generated always as identity primary key,
    org_code     text        not null,
    org_name     text        not null,          -- as the terminals show it
    title        text        not null check (length(title) between 1 and 80),
    body         text        not null check (length(body) between 1 and 2000),
    sent_by      text        not null,          -- the username (the audit log's actor)
    sender       text        not null,          -- as the terminals show it: a name and a role
    created_at   timestamptz not null,
    expires_at   timestamptz not null,
    recipients   integer     not null,
    sent_at      timestamptz,                   -- the broker took it (PUBACK)
    attempts     integer     not null default 0,
    check (expires_at > created_at)
);
create index announcements_unsent on announcements (id) where sent_at is null;
create index announcements_org on announcements (org_code text_pattern_ops, id desc);

create table announcement_recipients (
    announcement_id  bigint not null references announcements (id),
    terminal_id      text   not null,
    primary key (announcement_id, terminal_id)
);

-- what terminals send (the ingest writes it, a time series like everything it writes): a receipt
-- read again later is a second row; the pages count terminals, once each
create table announcement_reads (
    time             timestamptz not null,
    announcement_id  bigint      not null,
    terminal_id      text        not null,
    received_at      timestamptz not null default now(),
    constraint announcement_reads_key unique (terminal_id, announcement_id, time)
);
select create_hypertable('announcement_reads', by_range('time', interval '30 days'));
create index announcement_reads_announcement on announcement_reads (announcement_id, terminal_id);

create function announcements_wake() returns trigger language plpgsql as $$
begin
    perform pg_notify('announcement', '');
    return null;
end $$;
create trigger announcements_wake after insert on announcements
    for each statement execute function announcements_wake();
