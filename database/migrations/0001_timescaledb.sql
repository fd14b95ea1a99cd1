-- TimescaleDB powers every time series of the command center.
create extension if not exists timescaledb;
