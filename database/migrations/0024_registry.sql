-- The device and member registry at run time (issue 14). The reference tables were written only by
-- `python -m database.citydb load`; now an admin adds, changes, moves and retires members, their
-- devices, gateways and sensors while everything runs (registry/), and every process that holds
-- the reference data in memory learns of a change by LISTEN registry (database.citydb.CityWatch).

-- A member's devices: the dedicated terminal (members.terminal_id, the one tasks and notices go
-- to) and any others, e.g. a phone running OwnTracks or Traccar Client. A fix says which device
-- sent it (positions.terminal_id, positions.source).
create table member_devices (
    device_id   text        primary key,            -- the broker username / topic id / OsmAnd id
    member_id   text        not null references members (member_id),
    kind        text        not null check (kind in ('terminal', 'owntracks', 'osmand')),
    label       text        not null default '',    -- "work phone", "terminal #2" …
    added_at    timestamptz not null default now(),
    retired_at  timestamptz                          -- retired: its messages are dead-lettered as retired_device
);
create index member_devices_member on member_devices (member_id);
insert into member_devices (device_id, member_id, kind) select terminal_id, member_id, 'terminal' from members;

-- Retired, never deleted: what they sent stays attributable, and what they still send is refused
-- as retired_device rather than unknown_device.
alter table members add column retired_at timestamptz;
alter table gateways add column retired_at timestamptz;
alter table sensors add column retired_at timestamptz;

-- One notification per changing statement, on commit (PostgreSQL folds identical ones of a
-- transaction into one): the payload names the table, so a listener can tell a device change
-- (cheap to apply) from a boundary change (the grid index is rebuilt). And a version number: a
-- worker that meets an unknown device asks whether the registry moved on since it last read it
-- (the notification may still be on its way), rather than refuse a device added a moment ago.
create sequence registry_version;
create function registry_changed() returns trigger language plpgsql security definer set search_path = public as $$
begin
    perform nextval('registry_version');
    perform pg_notify('registry', tg_table_name);
    return null;
end $$;

do $$
declare t text;
begin
    foreach t in array array['org_units', 'grids', 'buildings', 'gateways', 'sensors', 'members', 'member_devices']
    loop
        execute format('create trigger %I after insert or update or delete or truncate on %I '
                       'for each statement execute function registry_changed()', t || '_registry_changed', t);
    end loop;
end $$;
