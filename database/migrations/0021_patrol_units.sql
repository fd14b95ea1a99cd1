-- Patrol sums per day and org unit at every level (issue 13): grid-days inspected and member-days
-- active, kept by the patrol maintainer as its rows change (kpis/patrol.py), so a scope's
-- inspection and active rates are a few rows a day (the city's 60 days read 480,000 member rows:
-- 3.4 s). Filled here from the member rows so far.
create table patrol_units_daily (
    day                  date     not null,
    org_code             text     not null,
    level                smallint generated always as (length(org_code)) stored,
    grid_days_inspected  integer  not null default 0,
    member_days_active   integer  not null default 0,
    primary key (day, org_code)
);
create index patrol_units_daily_level on patrol_units_daily (level, org_code text_pattern_ops, day);

insert into patrol_units_daily (day, org_code, grid_days_inspected, member_days_active)
select day, left(grid_code, n), sum(inspected::int), sum(active)
from (select day, grid_code, bool_or(fixes_in_grid > 0) as inspected, count(*) filter (where fixes > 0) as active
      from patrol_daily group by day, grid_code) g
cross join (values (6), (9), (12), (15)) as l(n)
group by day, left(grid_code, n);
