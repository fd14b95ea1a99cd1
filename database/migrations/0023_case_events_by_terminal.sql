-- The track replay (issue 13) shows a member's case work on their track: the events a terminal
-- wrote in a time range. Without this index that query filtered every event of the range
-- (82 ms for one demo day, and the big city writes ~100× more a day).
create index case_events_terminal on case_events (actor, time) where actor_kind = 'terminal';
