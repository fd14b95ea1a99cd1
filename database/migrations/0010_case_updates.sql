-- A terminal's work on a case (accept, reject, start, feedback, verify, ask for an extension),
-- stored by the ingest like every device message, and handed to the cases engine through the inbox
-- in the same transaction. Whether that terminal may do it is the engine's to decide.
create table case_updates (
    time         timestamptz not null,
    case_id      text        not null,
    terminal_id  text        not null,
    action       text        not null check (action in ('accept', 'reject', 'start', 'feedback', 'verify_pass',
                                                        'verify_fail', 'extension')),
    note         text,
    reason       text,
    photo_refs   jsonb       not null default '[]',
    extension    text,
    received_at  timestamptz not null default now(),
    constraint case_updates_key unique (terminal_id, case_id, action, time)
);
select create_hypertable('case_updates', by_range('time', interval '30 days'));
create index case_updates_case on case_updates (case_id, time desc);

alter table case_inbox drop constraint case_inbox_kind_check;
alter table case_inbox add constraint case_inbox_kind_check check (kind in ('report', 'alarm', 'sos', 'update'));

create function case_inbox_update() returns trigger language plpgsql security definer
    set search_path = public, pg_temp as $$
begin
    insert into case_inbox (kind, key, time)
        values ('update', new.terminal_id || '/' || new.case_id || '/' || new.action, new.time);
    perform pg_notify('case_inbox', '');
    return null;
end $$;
create trigger case_updates_to_cases after insert on case_updates
    for each row execute function case_inbox_update();
