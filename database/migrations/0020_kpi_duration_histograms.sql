-- The durations' histograms as one row per day, org unit and measure, its bins in an array (bin k
-- at index k + 1: durations up to 1.1^k s), summed element by element on conflict: the city's 30
-- days are ~900 rows instead of ~50,000 (one per bin). Folded again from the facts.
drop table kpi_durations;
create table kpi_durations (
    day        date             not null,
    org_code   text             not null,
    level      smallint         generated always as (length(org_code)) stored,
    measure    text             not null check (measure in ('register', 'dispatch', 'accept', 'handle', 'close')),
    n          integer          not null,
    total_s    double precision not null,
    bins       integer[]        not null,
    primary key (day, org_code, measure)
);
create index kpi_durations_level on kpi_durations (level, org_code text_pattern_ops, day);

-- a + b, element by element (the shorter padded with zeros)
create function kpi_add_bins(a integer[], b integer[]) returns integer[] language sql immutable as $$
    select coalesce(array_agg(coalesce(x, 0) + coalesce(y, 0) order by i), '{}')
    from unnest(a, b) with ordinality as t(x, y, i)
$$;

truncate kpi_daily, case_stage_facts, case_facts;
insert into kpi_dirty (case_id) select case_id from cases on conflict do nothing;
