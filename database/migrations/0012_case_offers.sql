-- Each offer of a case to a member's terminal (the dispatch stage): who, when, until when, ranked
-- how, and how it ended. Every dispatch is an offer; one not accepted in time expires (the cases
-- engine), and a rejected or expired one is followed by an offer to the next candidate, up to the
-- configured number of tries, after which the case waits in the dispatch queue flagged unassigned.
create table case_offers (
    id           bigint      generated always as identity primary key,
    case_id      text        not null references cases (case_id),
    stage_seq    integer     not null,
    terminal_id  text        not null,
    offered_by   text        not null,          -- a username, "automatic", or the demo desk
    rank         integer,                       -- its place among the candidates (null: chosen by hand)
    reason       text,                          -- why it ranked there
    offered_at   timestamptz not null,
    expires_at   timestamptz not null,
    outcome      text        check (outcome in ('accepted', 'rejected', 'expired', 'withdrawn')),
    decided_at   timestamptz,
    followed     boolean     not null default false   -- a rejected or expired one: the next offer was made
);
create index case_offers_open on case_offers (expires_at) where outcome is null;
create index case_offers_to_follow on case_offers (decided_at) where outcome in ('rejected', 'expired')
    and not followed;
create index case_offers_case on case_offers (case_id, id);
alter table cases add column unassigned boolean not null default false;   -- the tries ran out
