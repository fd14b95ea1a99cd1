-- Reference data: the grid hierarchy and its "five elements", loaded from a city file by
-- `python -m database.citydb load`. Boundaries are GeoJSON (WGS 84 lon/lat) with a bounding box
-- for coarse filtering; point-in-grid lookups happen in memory (telemetry.gridindex).

create table org_units (
    code         text primary key,           -- 6 / 9 / 12 digits (district / street / community)
    level        text not null check (level in ('district', 'street', 'community')),
    parent_code  text references org_units (code),
    name         text not null,
    boundary     jsonb not null
);

create table grids (
    code            char(15) primary key,
    community_code  text not null references org_units (code),
    name            text not null,
    kind            text not null check (kind in ('residential', 'unit')),
    households      integer not null check (households >= 0),
    population      integer not null check (population >= 0),
    boundary        jsonb not null,
    min_lon double precision not null, min_lat double precision not null,
    max_lon double precision not null, max_lat double precision not null
);
create index grids_community on grids (community_code);

create table buildings (
    building_id  text primary key,
    grid_code    char(15) not null references grids (code),
    name         text not null,
    lon          double precision not null,
    lat          double precision not null,
    floors       smallint not null,
    households   integer not null
);
create index buildings_grid on buildings (grid_code);

create table units (
    unit_id    text primary key,
    grid_code  char(15) not null references grids (code),
    name       text not null,
    kind       text not null,
    lon        double precision not null,
    lat        double precision not null
);

create table organizations (
    org_id     text primary key,
    grid_code  char(15) not null references grids (code),
    name       text not null,
    kind       text not null
);

create table gateways (
    gateway_id   text primary key,
    kind         text not null,
    building_id  text not null references buildings (building_id),
    grid_code    char(15) not null references grids (code),
    protocol     text not null check (protocol in ('senml', 'json'))
);

create table sensors (
    sensor_id    text primary key,
    kind         text not null,
    building_id  text not null references buildings (building_id),
    gateway_id   text not null references gateways (gateway_id),
    grid_code    char(15) not null references grids (code),
    lon          double precision not null,
    lat          double precision not null
);
create index sensors_grid on sensors (grid_code);
create index sensors_gateway on sensors (gateway_id);

create table members (
    member_id    text primary key,
    name         text not null,
    role         text not null,
    grid_code    char(15) not null references grids (code),
    terminal_id  text not null unique
);
create index members_grid on members (grid_code);

create table city_info (
    singleton  boolean primary key default true check (singleton),
    name       text not null,
    seed       bigint not null,
    loaded_at  timestamptz not null default now()
);
