-- The registry's version as a committed counter (0024 used a sequence: nextval is not
-- transactional, so a worker could read a change's version before the change committed, read the
-- city without it, and then take itself for current: a device added a moment ago was refused as
-- unknown_device now and then). A row updated by the same triggers is seen only once committed.
create table registry_state (
    singleton  boolean primary key default true check (singleton),
    version    bigint  not null
);
insert into registry_state (version) values (0);

create or replace function registry_changed() returns trigger language plpgsql security definer
    set search_path = public as $$
begin
    update registry_state set version = version + 1;
    perform pg_notify('registry', tg_table_name);
    return null;
end $$;

drop sequence registry_version;
