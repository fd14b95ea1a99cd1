-- Photos from members' phones (网格通, issue 25; handheld/photos.py): uploaded on their own before the
-- report or feedback that names them, and named by the hash of the bytes the phone sent
-- ('sha256:<64 lowercase hex>'), so the same bytes sent again are the same photo. What is kept is
-- not what was sent: the server decodes it, applies its orientation and encodes it again from the
-- pixels alone (no EXIF, GPS, ICC, XMP or comment survives), at most 1600 px a side, with a
-- thumbnail of at most 320 px.
--
-- Kept in PostgreSQL, inside the upload's transaction: a photo the phone was told is stored (201 or
-- 200) survives any process crash, as a message does, and is backed up with the cases that name
-- it. A photo is small (a phone's ≤ 1600 px JPEG, ~0.2-0.5 MB) and a city's members take a few
-- thousand a day; the storage issue may move old ones to an archive (an object store, keeping the
-- ref) later, and this table would then keep only their refs and where they went.
create table photos (
    ref           text        primary key check (ref ~ '^sha256:[0-9a-f]{64}$'),
    device_id     text        not null,      -- the phone that sent it (member_devices, kind 'handheld')
    member_id     text        not null,
    terminal_id   text        not null,      -- the member's terminal, as whose the phone speaks
    grid_code     char(15),                  -- the uploader's home grid
    content_type  text        not null check (content_type = 'image/jpeg'),   -- of what is stored
    width         integer     not null check (width between 1 and 1600),
    height        integer     not null check (height between 1 and 1600),
    bytes         bytea       not null,      -- the stripped JPEG
    thumb         bytea       not null,      -- ≤ 320 px JPEG
    size_uploaded integer     not null check (size_uploaded > 0),   -- what the phone sent (its quota)
    created_at    timestamptz not null default now()
);
-- a device's uploads of a day (its quota); a member's own uploads (what its phones may read back)
create index photos_device_time on photos (device_id, created_at);
create index photos_member on photos (member_id);

-- An incident report names up to 4 photos (`photo_refs`), beside the one `photo_ref` old terminals
-- send (kept). Null for the rows stored before.
alter table incident_reports add column photo_refs text[];

-- Who may see a photo is whoever may see a report or case that names it (the dashboard's
-- /photos/<hex>, the handheld's GET): these find the reports and case events naming a ref.
create index incident_reports_photo_refs on incident_reports using gin (photo_refs);
create index incident_reports_photo_ref on incident_reports (photo_ref) where photo_ref is not null;
create index case_events_photo_refs on case_events using gin ((detail -> 'photo_refs'));
