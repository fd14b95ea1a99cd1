-- The durations' histograms per day and org unit, without the category (the page and the report read
-- them per unit only, and the city's read 900,000 histogram rows for 30 days of the big city); the
-- sums so far are kept, summed over the categories. And the rework list's index: the failed
-- verifications of a period, without reading every case event of it.
create table kpi_durations_by_unit (
    day        date             not null,
    org_code   text             not null,
    level      smallint         generated always as (length(org_code)) stored,
    measure    text             not null check (measure in ('register', 'dispatch', 'accept', 'handle', 'close')),
    bin        smallint         not null,
    n          integer          not null,
    total_s    double precision not null,
    primary key (day, org_code, measure, bin)
);
insert into kpi_durations_by_unit (day, org_code, measure, bin, n, total_s)
    select day, org_code, measure, bin, sum(n), sum(total_s) from kpi_durations group by 1, 2, 3, 4;
drop table kpi_durations;
alter table kpi_durations_by_unit rename to kpi_durations;
alter table kpi_durations rename constraint kpi_durations_by_unit_pkey to kpi_durations_pkey;
create index kpi_durations_level on kpi_durations (level, org_code text_pattern_ops, day);

create index case_events_reworks on case_events (time) where command = 'verify' and to_state = 'handling';
