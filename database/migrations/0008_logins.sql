-- Logins (issue 10): the people who use the screens, their sessions, the wall screens' device
-- tokens, and the login throttle. Nothing secret is stored in the clear: passwords as argon2id
-- hashes, session ids and wall tokens as SHA-256 of random 256-bit values (a read of these tables
-- gives no way in).

-- A person who uses the screens: one role, one org unit (its subtree is all they see).
create table users (
    username        text primary key check (username ~ '^[a-z0-9][a-z0-9._-]{1,39}$'),
    display_name    text        not null,
    role            text        not null check (role in ('wall_viewer', 'dispatcher', 'leader', 'admin')),
    scope_code      text        not null default '',      -- '' is the whole city
    password_hash   text        not null,                 -- argon2id, PHC string
    disabled        boolean     not null default false,
    created_at      timestamptz not null default now(),
    created_by      text        not null,
    password_changed_at timestamptz not null default now(),
    last_login_at   timestamptz
);

-- A wall screen logs in by a named token an admin created for one scope.
create table wall_tokens (
    id              bigint generated always as identity primary key,
    name            text        not null,
    scope_code      text        not null default '',
    token_hash      text        not null unique,          -- SHA-256 hex of the token
    created_at      timestamptz not null default now(),
    created_by      text        not null,
    revoked_at      timestamptz,
    revoked_by      text,
    last_seen_at    timestamptz
);

-- A signed-in browser: the cookie holds the session id, this table its hash. Ended by logout,
-- by expiry (idle, absolute), by disabling the user or revoking the wall token.
create table sessions (
    id_hash         text primary key,                     -- SHA-256 hex of the session id
    username        text references users (username),     -- a person's session
    wall_token_id   bigint references wall_tokens (id),   -- or a wall screen's
    created_at      timestamptz not null default now(),
    last_seen_at    timestamptz not null default now(),
    expires_at      timestamptz not null,                 -- absolute end
    idle_s          integer     not null,                 -- ends when unused this long
    ended_at        timestamptz,
    ended_why       text,
    source_address  text,
    user_agent      text,
    check ((username is null) <> (wall_token_id is null))
);
create index sessions_username on sessions (username) where ended_at is null;
create index sessions_wall_token on sessions (wall_token_id) where ended_at is null;

-- Failed logins, per key ('user:<name>' whether or not such a user exists, 'addr:<address>'):
-- counted in a window, locked out for a while after too many.
create table login_throttle (
    key             text primary key,
    failures        integer     not null default 0,
    window_start    timestamptz not null default now(),
    locked_until    timestamptz
);
