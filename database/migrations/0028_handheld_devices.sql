-- The members' handheld (网格通, issue 25): a phone running our web app is a member device of kind
-- 'handheld'. It has no broker account (it speaks HTTPS to the ingest's device-facing server, not
-- MQTT): it is enrolled with a one-time code an admin makes on the Members' phones page, keeps a
-- device secret, signs in with its member's PIN and carries a bearer session. Every secret is
-- stored hashed: the code, the device secret and the session token as sha256 (random, 256 and
-- 128+ bits: nothing to guess), the PIN (6 digits: guessable) as Argon2id.

alter table member_devices drop constraint member_devices_kind_check;
alter table member_devices add constraint member_devices_kind_check
    check (kind in ('terminal', 'owntracks', 'osmand', 'handheld'));

-- A one-time enrolment code (registry.handhelds.create_enrolment): valid 24 hours, once. The
-- device it will make is named when the code is made (shown on the page), made when it is used.
create table handheld_enrolments (
    code_sha256 bytea       primary key,
    member_id   text        not null references members (member_id),
    device_id   text        not null unique,        -- the device the code makes (member_devices once used)
    label       text        not null default '',
    created_by  text        not null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    used_at     timestamptz,
    check (expires_at > created_at)
);
create index handheld_enrolments_member on handheld_enrolments (member_id);

-- A handheld's credentials: its device secret (kept by the app) and its member's PIN.
create table handheld_credentials (
    device_id     text        primary key references member_devices (device_id),
    secret_sha256 bytea       not null,
    pin_hash      text        not null,             -- Argon2id (argon2-cffi's encoded form)
    created_at    timestamptz not null default now(),
    revoked_at    timestamptz                        -- revoked (a stolen phone): no sign-in, no session
);

-- A signed-in shift: a bearer token's hash, 12 hours, ended by signing out or by the device's
-- revocation or retirement. Checked at every request (by its primary key).
create table handheld_sessions (
    token_sha256 bytea       primary key,
    device_id    text        not null references member_devices (device_id),
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null,
    ended_at     timestamptz,
    source       text                                -- the address it signed in from (the audit's)
);
create index handheld_sessions_open on handheld_sessions (device_id) where ended_at is null;

-- Using a code: one transaction that makes the device, its credentials and marks the code used,
-- with its audit row. Security definer so that the device-facing server's role (gcc_ingest) may
-- make a handheld through this door only, not write member_devices or the audit trail at will.
-- Returns the device's id and member, or no row when the code is unknown, used or expired, or its
-- member retired.
create function handheld_redeem(p_code bytea, p_secret bytea, p_pin_hash text, p_label text, p_source text)
returns table (device_id text, member_id text)
language plpgsql security definer set search_path = public as $$
declare
    e handheld_enrolments%rowtype;
    grid text;
begin
    select * into e from handheld_enrolments h
     where h.code_sha256 = p_code and h.used_at is null and h.expires_at > now() for update;
    if not found then
        return;
    end if;
    select m.grid_code into grid from members m where m.member_id = e.member_id and m.retired_at is null;
    if grid is null then
        return;
    end if;
    insert into member_devices (device_id, member_id, kind, label)
        values (e.device_id, e.member_id, 'handheld', coalesce(nullif(p_label, ''), e.label));
    insert into handheld_credentials (device_id, secret_sha256, pin_hash) values (e.device_id, p_secret, p_pin_hash);
    update handheld_enrolments h set used_at = now() where h.code_sha256 = p_code;
    insert into audit_log (actor, roles, action, target, scope_code, outcome, reason, before, after, source_address)
        values ('handheld-enrolment', '{}', 'registry.device.add', 'device:' || e.device_id, grid, 'done', null,
                null, jsonb_build_object('member_id', e.member_id, 'kind', 'handheld',
                                         'label', coalesce(nullif(p_label, ''), e.label),
                                         'enrolled_by', e.created_by), p_source);
    return query select e.device_id, e.member_id;
end $$;
revoke execute on function handheld_redeem(bytea, bytea, text, text, text) from public;
