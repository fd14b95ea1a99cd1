-- kpi_dirty as an append-only log (issue 13): a unique key made two writers of case events (the
-- engine, the demo desk, a dispatcher) wait on each other's uncommitted "this case changed" rows,
-- and deadlock when they listed the same cases in different orders; an insert into a log never
-- waits. The maintainer takes rows by id (FOR UPDATE SKIP LOCKED) and folds each case once.
create table kpi_dirty_log (
    id       bigint generated always as identity primary key,
    case_id  text   not null
);
insert into kpi_dirty_log (case_id) select case_id from kpi_dirty;
drop table kpi_dirty;
alter table kpi_dirty_log rename to kpi_dirty;
alter table kpi_dirty rename constraint kpi_dirty_log_pkey to kpi_dirty_pkey;

create or replace function kpi_dirty_case() returns trigger language plpgsql security definer
    set search_path = public, pg_temp as $$
begin
    insert into kpi_dirty (case_id) values (new.case_id);
    return null;
end $$;
