-- Patrol coverage (issue 13): each member's day, folded from their fixes as they are stored
-- (kpis/patrol.py): fixes, fixes inside their home grid, the grid's H3 cells (resolution 11)
-- visited, distance walked, time in the grid, and where the next fix goes on from.
create table patrol_daily (
    day             date             not null,       -- city time
    terminal_id     text             not null,
    grid_code       char(15)         not null,       -- the member's home grid
    fixes           integer          not null,
    fixes_in_grid   integer          not null,
    cells           text[]           not null,
    cells_total     integer          not null,
    distance_m      double precision not null,
    seconds_in_grid double precision not null,
    last_time       timestamptz,
    last_lat        double precision,
    last_lon        double precision,
    last_in_grid    boolean          not null default false,
    primary key (day, terminal_id)
);
create index patrol_daily_grid on patrol_daily (grid_code, day);

-- how far the fixes are folded (one row)
create table patrol_watermark (
    singleton  boolean     primary key default true check (singleton),
    upto       timestamptz not null
);
