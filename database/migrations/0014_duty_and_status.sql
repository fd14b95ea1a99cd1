-- The duty roster and the members' dispatch status over time (issue 12).
--
-- duty_roster: who is on duty on a day (city time), and when. A day with no rows has no roster:
-- everyone counts as on duty (the screens say so); a day with rows: a member without one is off
-- duty that day, and one with a row is on duty from `starts` to `ends` (inclusive).
create table duty_roster (
    day          date        not null,
    terminal_id  text        not null,
    starts       time        not null default '00:00',
    ends         time        not null default '23:59:59',
    note         text,
    primary key (day, terminal_id),
    check (ends > starts)
);

-- member_status: every change of a member's dispatch status (dispatch/status.py) with its cause,
-- as the cases engine sees it (dispatch/history.py): the history behind the console's status and
-- the leaders' indicators (time available, on duty, online).
create table member_status (
    time         timestamptz not null,
    terminal_id  text        not null,
    status       text        not null check (status in ('off_duty', 'offline', 'unavailable', 'requested',
                                                        'en_route', 'on_scene', 'available')),
    cause        text        not null,
    workload     integer     not null default 0,
    constraint member_status_key unique (terminal_id, time)
);
select create_hypertable('member_status', by_range('time', interval '7 days'));
create index member_status_terminal on member_status (terminal_id, time desc);
