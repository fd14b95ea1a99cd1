"""The members' photos against the real database, as deployed (the device-facing server's role is the
ingest's, the screens' the dashboard's): an upload is stored stripped and answered 201, the same
bytes again 200 with one row; too big 413, not a photo 415, a phone past its day's quota 429 with
Retry-After; a member reads back its own uploads and the photos of its grid's cases and of the
cases its terminal handles, and nothing else (404, as for a photo that does not exist); the
incident report's photo_refs are stored as an array by the ingest's store; the screens' read gives a
photo only to a scope that covers a report or case naming it."""
from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone

import orjson
import psycopg2
import pytest
from PIL import Image

from cases import store as case_store
from cases.intake import INTAKE
from cases.limits import Urgency
from cases.machine import open_case
from cases.model import Source
from cases.reads import CaseReads
from core.orgcodes import Scope
from handheld.caller import Caller
from handheld.photos import PhotoLimits, Photos, ref_of
from ingest.model import Enriched
from ingest.store import Batch, Store
from telemetry.kinds.incident_report import KIND as REPORT
from telemetry.kinds.incident_report import IncidentReport

from ..support import EndpointRequest
from .ingest_helpers import owner_rows
from .test_cases_engine import seeded

pytestmark = pytest.mark.slow


def _caller(member, device: str) -> Caller:
    return Caller(device, member.member_id, member.terminal_id, member.grid_code, member.role, member.name)


def _signed_in(caller: Caller):
    """handheld.sessions' wrapper, for a phone whose session was already checked."""
    return lambda respond: (lambda request: respond(caller, request))


def _jpeg(seed: int, size=(640, 480), exif_gps: bool = False) -> bytes:
    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    out = io.BytesIO()
    options = {}
    if exif_gps:
        exif = Image.Exif()
        exif.get_ifd(0x8825).update({1: "N", 2: (31.0, 13.0, 48.0)})
        options["exif"] = exif
    image.save(out, "JPEG", quality=90, **options)
    return out.getvalue()


@pytest.fixture(scope="module")
def ingest_dsn(stack):
    return stack.app_settings("ingest").pg_dsn


@pytest.fixture(scope="module")
def photos(ingest_dsn):
    found = Photos(ingest_dsn)
    yield found
    found.close()


@pytest.fixture(scope="module")
def cases_settings(stack, city):
    return seeded(stack)


def _members_of_two_grids(city, n: int):
    """Two members of one grid and one of a grid in another street, for test `n` (distinct each time)."""
    members_of = Counter(m.grid_code for m in city.members)
    grid = [g for g in city.grids if members_of[g.code] >= 2][n]
    first, second = [m for m in city.members if m.grid_code == grid.code][:2]
    street = grid.code[:9]
    other = next(m for m in city.members if not m.grid_code.startswith(street))
    return first, second, other


def _case_naming(stack, cases_settings, city, grid_code: str, reporter, refs: list[str], handler=None) -> str:
    """A case opened from an incident report of `reporter` that names `refs` (the report stored by
    the ingest's store, the case and its source link as the intake makes them)."""
    now = datetime.now(timezone.utc)
    report_id = f"r-{now.timestamp():.6f}"
    report = IncidentReport(report_id=report_id, terminal_id=reporter.terminal_id, time=now, category="noise",
                            severity=2, lat=31.2, lon=121.4, photo_refs=refs)
    batch = Batch()
    batch.add(REPORT.table, REPORT.row(Enriched(report, grid_code, reporter.member_id, received_at=now), now), 0)
    writer = Store(stack.app_settings("ingest").pg_dsn)
    try:
        assert writer.write(batch).inserted == {"incident_reports": 1}
    finally:
        writer.close()
    conn = psycopg2.connect(cases_settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            rules = case_store.load_rules(cur)
            case_id = case_store.next_case_id(cur, now)
            outcome = open_case(case_id, "exposed_garbage", Urgency.NORMAL, Source.REPORT, grid_code, grid_code,
                                INTAKE, now, rules, title="Noise", place="Gate 3")
            case = outcome.case if handler is None else replace(outcome.case, handler=handler.terminal_id)
            case_store.insert(cur, case, rules)
            case_store.add_events(cur, outcome.events)
            case_store.link_source(cur, "report", f"{reporter.terminal_id}/{report_id}", case_id, now, "opened")
    finally:
        conn.close()
    return case_id


# --- uploads -------------------------------------------------------------------------------------------

def test_an_upload_is_stored_stripped_and_the_same_bytes_again_are_the_same_photo(city, photos, stack):
    member, _, _ = _members_of_two_grids(city, 0)
    caller = _caller(member, "hh-photo-test-0")
    data = _jpeg(1, exif_gps=True)
    first = photos.upload(caller, "image/jpeg", data)
    assert first.status == 201, first.body
    answer = orjson.loads(first.body)
    assert answer == {"ref": ref_of(data), "width": 640, "height": 480}
    again = photos.upload(caller, "image/jpeg", data)
    assert again.status == 200 and orjson.loads(again.body) == answer
    [(device, member_id, terminal, grid, content_type, stored, thumb, size)] = owner_rows(
        stack, "select device_id, member_id, terminal_id, grid_code, content_type, bytes, thumb, size_uploaded "
               "from photos where ref = %s", answer["ref"])
    assert (device, member_id, terminal, grid, content_type, size) == \
        ("hh-photo-test-0", member.member_id, member.terminal_id, member.grid_code, "image/jpeg", len(data))
    image = Image.open(io.BytesIO(bytes(stored)))
    assert image.format == "JPEG" and len(image.getexif()) == 0 and b"Exif" not in bytes(stored)
    assert max(Image.open(io.BytesIO(bytes(thumb))).size) == 320


def test_an_upload_through_the_route_reads_the_body_and_the_header(city, photos):
    member, _, _ = _members_of_two_grids(city, 0)
    caller = _caller(member, "hh-photo-test-0")
    post, _get = photos.routes(_signed_in(caller))
    assert (post.method, post.path, post.max_body) == ("POST", "/handheld/api/v1/photos", 8 * 1024 * 1024)
    data = _jpeg(2)
    reply = post.respond(EndpointRequest("POST", post.path, {"Content-Type": "image/jpeg"}, data))
    assert reply.status == 201 and orjson.loads(reply.body)["ref"] == ref_of(data)
    refused = post.respond(EndpointRequest("POST", post.path, {"Content-Type": "text/html"}, data))
    assert refused.status == 415 and orjson.loads(refused.body)["error"] == "unsupported_media_type"


def test_too_big_is_413_and_not_a_photo_is_415_and_nothing_is_stored(city, photos, stack):
    member, _, _ = _members_of_two_grids(city, 0)
    caller = _caller(member, "hh-photo-test-refused")
    big = photos.upload(caller, "image/jpeg", b"\xff\xd8\xff" + b"\x00" * (8 * 1024 * 1024))
    assert big.status == 413 and orjson.loads(big.body)["error"] == "payload_too_large"
    gif = io.BytesIO()
    Image.new("RGB", (20, 20)).save(gif, "GIF")
    refused = photos.upload(caller, "image/jpeg", gif.getvalue())      # the header says JPEG: it is a GIF
    assert refused.status == 415 and refused.refused == "unsupported_media_type"
    assert "GIF" in orjson.loads(refused.body)["detail"]
    broken = photos.upload(caller, "image/jpeg", _jpeg(3)[:500])
    assert broken.status == 400 and orjson.loads(broken.body)["error"] == "bad_image"
    assert owner_rows(stack, "select count(*) from photos where device_id = %s", caller.device_id) == [(0,)]


def test_a_phone_past_its_days_quota_is_refused_with_retry_after(city, ingest_dsn, stack):
    member, _, _ = _members_of_two_grids(city, 1)
    caller = _caller(member, "hh-photo-test-quota")
    few = Photos(ingest_dsn, PhotoLimits(per_day=2))
    try:
        first, second, third = _jpeg(10), _jpeg(11), _jpeg(12)
        assert [few.upload(caller, "image/jpeg", d).status for d in (first, second)] == [201, 201]
        refused = few.upload(caller, "image/jpeg", third)
        assert refused.status == 429 and orjson.loads(refused.body)["error"] == "over_quota"
        retry_after = int(dict(refused.headers)["Retry-After"])
        assert 0 < retry_after <= 24 * 3600
        assert few.upload(caller, "image/jpeg", first).status == 200        # a photo stored already: no new cost
        other_phone = _caller(member, "hh-photo-test-quota-2")               # the quota is the phone's
        assert few.upload(other_phone, "image/jpeg", third).status == 201
    finally:
        few.close()
    small = Photos(ingest_dsn, PhotoLimits(bytes_per_day=len(_jpeg(20)) + 10))
    try:
        bytes_caller = _caller(member, "hh-photo-test-bytes")
        assert small.upload(bytes_caller, "image/jpeg", _jpeg(20)).status == 201
        assert small.upload(bytes_caller, "image/jpeg", _jpeg(21)).status == 429
    finally:
        small.close()
    assert owner_rows(stack, "select count(*) from photos where device_id = 'hh-photo-test-quota'") == [(2,)]


# --- who may read a photo --------------------------------------------------------------------------------

def _read(photos, caller, ref: str, thumb: bool = False):
    _post, get = photos.routes(_signed_in(caller))
    path = f"{get.path}{ref.removeprefix('sha256:')}" + ("?thumb=1" if thumb else "")
    return get.respond(EndpointRequest("GET", path))


def test_a_member_reads_its_own_upload_and_its_grids_cases_photos_and_no_other(city, photos, stack,
                                                                                 cases_settings):
    uploader, neighbour, stranger = _members_of_two_grids(city, 2)
    mine = orjson.loads(photos.upload(_caller(uploader, "hh-photo-read-1"), "image/jpeg", _jpeg(30)).body)["ref"]
    in_case = orjson.loads(photos.upload(_caller(uploader, "hh-photo-read-1"), "image/jpeg", _jpeg(31)).body)["ref"]
    _case_naming(stack, cases_settings, city, uploader.grid_code, uploader, [in_case])
    as_uploader = _caller(uploader, "hh-photo-read-1")
    full, thumb = _read(photos, as_uploader, mine), _read(photos, as_uploader, mine, thumb=True)
    assert full.status == 200 and full.content_type == "image/jpeg" and len(thumb.body) < len(full.body)
    assert ("X-Content-Type-Options", "nosniff") in full.headers
    assert dict(full.headers)["Cache-Control"].startswith("private")
    assert Image.open(io.BytesIO(thumb.body)).size == (320, 240)
    as_neighbour = _caller(neighbour, "hh-photo-read-2")          # same grid: its case's photo, not the other
    assert _read(photos, as_neighbour, in_case).status == 200
    assert _read(photos, as_neighbour, mine).status == 404
    as_stranger = _caller(stranger, "hh-photo-read-3")            # another street: neither
    for ref in (mine, in_case):
        refused = _read(photos, as_stranger, ref)
        assert refused.status == 404 and orjson.loads(refused.body)["error"] == "not_found"
    assert _read(photos, as_stranger, ref_of(b"nothing")).status == 404     # the same as for no photo at all
    assert _read(photos, as_stranger, "sha256:../../etc").status == 400


def test_the_handler_of_a_case_in_another_grid_reads_its_photos(city, photos, stack, cases_settings):
    uploader, _, handler = _members_of_two_grids(city, 3)
    ref = orjson.loads(photos.upload(_caller(uploader, "hh-photo-handled"), "image/jpeg", _jpeg(40)).body)["ref"]
    as_handler = _caller(handler, "hh-photo-handler")
    assert _read(photos, as_handler, ref).status == 404
    _case_naming(stack, cases_settings, city, uploader.grid_code, uploader, [ref], handler=handler)
    assert _read(photos, as_handler, ref).status == 200


def test_a_feedback_photo_is_seen_by_the_cases_grid(city, photos, stack, cases_settings):
    """An 'after' photo: named by a case event (the handler's feedback), not by a report."""
    handler, neighbour, stranger = _members_of_two_grids(city, 4)
    ref = orjson.loads(photos.upload(_caller(handler, "hh-photo-after"), "image/jpeg", _jpeg(50)).body)["ref"]
    case_id = _case_naming(stack, cases_settings, city, handler.grid_code, handler, [])
    owner = psycopg2.connect(stack.settings().pg_dsn)
    try:
        with owner, owner.cursor() as cur:
            cur.execute("insert into case_events (case_id, time, command, actor_kind, actor, roles, from_state, "
                        "to_state, detail) values (%s, now(), 'feedback', 'terminal', %s, '{}', 'handling', "
                        "'handled', %s)", (case_id, handler.terminal_id, orjson.dumps({"photo_refs": [ref]}).decode()))
    finally:
        owner.close()
    assert _read(photos, _caller(neighbour, "hh-photo-after-2"), ref).status == 200
    assert _read(photos, _caller(stranger, "hh-photo-after-3"), ref).status == 404
    reads = CaseReads(city, stack.app_settings("dashboard").pg_dsn)
    assert [(p["ref"], p["stage"]) for p in reads.case_photos(case_id)] == [(ref, "feedback")]


# --- the report's photo_refs and the screens' read --------------------------------------------------------

def test_photo_refs_are_stored_as_an_array_and_the_screens_read_follows_the_scope(city, photos, stack,
                                                                                  cases_settings):
    reporter, _, stranger = _members_of_two_grids(city, 5)
    refs = [orjson.loads(photos.upload(_caller(reporter, "hh-photo-screens"), "image/jpeg", _jpeg(n)).body)["ref"]
            for n in (60, 61)]
    odd = 'photos/T1/"quoted",{braced}.jpg'              # an old terminal's path, with what an array must escape
    case_id = _case_naming(stack, cases_settings, city, reporter.grid_code, reporter, [*refs, odd])
    assert owner_rows(stack, "select photo_refs from incident_reports where terminal_id = %s and %s = any(photo_refs)",
                      reporter.terminal_id, refs[0]) == [([*refs, odd],)]
    reads = CaseReads(city, stack.app_settings("dashboard").pg_dsn)
    assert [(p["ref"], p["stage"]) for p in reads.case_photos(case_id)] == \
        [(refs[0], "report"), (refs[1], "report"), (odd, "report")]
    street = Scope(reporter.grid_code[:9], "street")
    other_street = Scope(stranger.grid_code[:9], "other street")
    full = reads.photo(street, refs[0])
    assert full is not None and Image.open(io.BytesIO(full)).size == (640, 480)
    assert Image.open(io.BytesIO(reads.photo(Scope("", "city"), refs[1], thumb=True))).size == (320, 240)
    assert reads.photo(other_street, refs[0]) is None
    assert reads.photo(street, ref_of(b"never uploaded")) is None
