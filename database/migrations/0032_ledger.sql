-- The grid's ledger (基础数据, issue 26): the five elements of every grid. The values of every
-- check below are core/ledger.py's (tests/unit/test_ledger_words.py compares them). Personal data
-- (an ID number, a phone) is never here in clear: each is sealed by the application (ledger/privacy.py:
-- AES-256-GCM), beside its keyed index (HMAC-SHA256: exact-match search, duplicates) and the masked
-- form every screen shows.
--
-- Spatial columns are PostGIS's (Debian's postgresql-15-postgis-3, installed by `make setup`), with
-- GiST indexes: footprints and things near a point are spatial queries.
create extension if not exists postgis;

-- places: a building's footprint, its entrances (单元); the city's point and floors stay
alter table buildings add column footprint geometry(Polygon, 4326);
alter table buildings add column entrances smallint not null default 1 check (entrances between 1 and 40);
create index buildings_footprint on buildings using gist (footprint);

-- a house (房屋): entrance → floor → number in its building
create table houses (
    house_id     bigint      generated always as identity primary key,
    building_id  text        not null references buildings (building_id),
    grid_code    char(15)    not null references grids (code),   -- its building's: scope without a join
    entrance     smallint    not null check (entrance >= 1),
    floor        smallint    not null,                            -- below 0: a basement
    number       text        not null,                            -- the door's number, e.g. '501'
    area_m2      real        check (area_m2 > 0),
    use          text        not null check (use in ('owner_occupied', 'rented', 'commercial', 'vacant', 'other')),
    version      integer     not null default 1,
    unique (building_id, entrance, number)
);
create index houses_grid on houses (grid_code);

-- people: a household (户) in a house, its head (户主), its residents
create table households (
    household_id  bigint   generated always as identity primary key,
    house_id      bigint   not null references houses (house_id),
    head_id       bigint,                                         -- the resident who heads it
    version       integer  not null default 1
);
create index households_house on households (house_id);

create table residents (
    resident_id       bigint    generated always as identity primary key,
    household_id      bigint    references households (household_id),
    grid_code         char(15)  not null references grids (code), -- where they live: scope without a join
    relation          text      not null check (relation in ('head', 'spouse', 'child', 'parent', 'grandchild',
                                                             'grandparent', 'sibling', 'tenant', 'other')),
    name              text      not null,
    gender            text      not null check (gender in ('male', 'female')),
    birth_date        date,
    id_number_sealed  bytea,                 -- ledger.privacy.Sealer.seal('id_number', …)
    id_number_index   bytea,                 -- ledger.privacy.Sealer.index('id_number', …)
    id_number_masked  text,                  -- 3501**********1234
    phone_sealed      bytea,
    phone_index       bytea,
    phone_masked      text,                  -- 138****5678
    registration      text      not null check (registration in ('local', 'floating', 'foreign')),
    moved_in          date,
    moved_out         date,                  -- kept for a configured time after, then deleted (a job)
    version           integer   not null default 1,
    check ((id_number_sealed is null) = (id_number_index is null) and (id_number_sealed is null) = (id_number_masked is null)),
    check ((phone_sealed is null) = (phone_index is null) and (phone_sealed is null) = (phone_masked is null))
);
create index residents_household on residents (household_id);
create index residents_grid_name on residents (grid_code, name text_pattern_ops);
create index residents_name on residents (name text_pattern_ops);
create index residents_id_number on residents (id_number_index) where id_number_index is not null;
create index residents_phone on residents (phone_index) where phone_index is not null;
create index residents_moved_out on residents (moved_out) where moved_out is not null;
alter table households add constraint households_head foreign key (head_id) references residents (resident_id)
    deferrable initially deferred;

create table resident_tags (
    resident_id  bigint  not null references residents (resident_id) on delete cascade,
    tag          text    not null check (tag in ('elderly_alone', 'disabled', 'low_income', 'veteran',
                                                 'left_behind_child', 'community_correction',
                                                 'drug_rehabilitation', 'petition_key_person')),
    since        date,
    primary key (resident_id, tag)
);
create index resident_tags_tag on resident_tags (tag, resident_id);

-- things: urban parts (部件, CJ/T 214)
create table things (
    thing_id     text      primary key,                        -- the part's code (部件编码)
    kind         text      not null check (kind in ('hydrant', 'manhole_cover', 'street_lamp', 'camera',
                                                    'fire_extinguisher', 'aed')),
    grid_code    char(15)  not null references grids (code),
    building_id  text      references buildings (building_id), -- a part inside or on a building
    position     geometry(Point, 4326) not null,
    owner        text      not null,                           -- who keeps it (a department, a company)
    state        text      not null check (state in ('good', 'damaged', 'missing', 'under_repair')),
    version      integer   not null default 1
);
create index things_position on things using gist (position);
create index things_grid on things (grid_code);

-- organisations: the city's shops and units (门店/单位) and social organisations gain their ledger
-- fields; a contact's phone is personal data like a resident's
alter table units add column building_id text references buildings (building_id);
alter table units add column licence text;                    -- 统一社会信用代码 / business licence
alter table units add column contact_name text;
alter table units add column contact_phone_sealed bytea;
alter table units add column contact_phone_index bytea;
alter table units add column contact_phone_masked text;
alter table units add column fire_key_unit boolean not null default false;   -- 消防重点单位
alter table units add column version integer not null default 1;
alter table organizations add column building_id text references buildings (building_id);
alter table organizations add column contact_name text;
alter table organizations add column contact_phone_sealed bytea;
alter table organizations add column contact_phone_index bytea;
alter table organizations add column contact_phone_masked text;
alter table organizations add column version integer not null default 1;

-- what a member registers from the handheld (采集登记): nothing changes the ledger until reviewed
create table ledger_submissions (
    submission_id   uuid         primary key,                  -- the message's own id: sent twice, kept once
    kind            text         not null check (kind in ('new_resident', 'moved_out', 'household_changed',
                                                          'house_use_changed', 'new_shop', 'thing_damaged')),
    grid_code       char(15)     not null references grids (code),
    community_code  text         not null,                     -- whose review queue
    terminal_id     text         not null,                     -- the member's terminal (their handheld speaks as it)
    member_id       text         not null,
    device_id       text,                                      -- the handheld it came from
    submitted_at    timestamptz  not null,                     -- on the phone (it may have waited offline)
    received_at     timestamptz  not null default now(),
    target_kind     text         check (target_kind in ('building', 'house', 'household', 'resident', 'thing',
                                                        'unit', 'organization')),
    target_id       text,                                      -- the record it changes (none: a new one)
    payload         jsonb        not null,                     -- personal fields sealed (ledger.privacy)
    photo_refs      text[]       not null default '{}',
    duplicates      jsonb        not null default '[]',        -- records it may repeat (same ID number, same house)
    state           text         not null default 'pending' check (state in ('pending', 'approved', 'returned')),
    reviewed_at     timestamptz,
    reviewed_by     text,
    reason          text,                                      -- why it was sent back
    case_id         text,                                      -- the case a damaged part reported
    check ((state = 'pending') = (reviewed_at is null)),
    check (state <> 'returned' or reason is not null)
);
create index ledger_submissions_queue on ledger_submissions (community_code, submitted_at) where state = 'pending';
create index ledger_submissions_member on ledger_submissions (member_id, submitted_at desc);

-- every change of a record, never overwritten: who, when, from where, approved by whom, before → after
create table ledger_changes (
    change_id      bigint       generated always as identity primary key,
    record_kind    text         not null check (record_kind in ('building', 'house', 'household', 'resident',
                                                                'thing', 'unit', 'organization')),
    record_id      text         not null,
    version        integer      not null,                      -- the record's version after the change
    action         text         not null check (action in ('create', 'update', 'delete')),
    changed_at     timestamptz  not null default now(),
    changed_by     text         not null,                      -- a member id, a username, or the job's name
    channel        text         not null check (channel in ('handheld', 'screen', 'import', 'job', 'demo')),
    submission_id  uuid         references ledger_submissions (submission_id),
    approved_by    text,                                       -- the reviewer of a submission
    before         jsonb,                                      -- personal fields sealed, never in clear
    after          jsonb,
    unique (record_kind, record_id, version)
);
create index ledger_changes_time on ledger_changes (changed_at);

-- events: a case and the records it concerns
create table case_subjects (
    case_id       text         not null references cases (case_id),
    subject_kind  text         not null check (subject_kind in ('building', 'house', 'household', 'resident',
                                                                'thing', 'unit', 'organization')),
    subject_id    text         not null,
    linked_at     timestamptz  not null default now(),
    linked_by     text         not null,
    primary key (case_id, subject_kind, subject_id)
);
create index case_subjects_subject on case_subjects (subject_kind, subject_id);

-- who may see personal data unmasked, or the restricted tags, and where (granted per user and org unit)
create table ledger_grants (
    username    text         not null references users (username),
    permission  text         not null check (permission in ('unmask', 'restricted_tags')),
    scope_code  text         not null,
    granted_by  text         not null,
    granted_at  timestamptz  not null default now(),
    reason      text         not null,
    revoked_at  timestamptz,
    primary key (username, permission, scope_code)
);
