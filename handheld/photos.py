"""The members' photos (docs/HANDHELD_API.md, "Photos"): a phone uploads each photo on its own, and
a report or a case update names it by the hash of the bytes it sent (`sha256:<hex>`).

What is kept is made again from the pixels: the bytes are decoded by Pillow (the type is read from
the content, whatever the header says: JPEG, PNG or WebP; anything else is `415`), turned upright
by their EXIF orientation, shrunk to at most 1600 px a side and encoded as a new JPEG, with a
thumbnail of at most 320 px. Nothing of the file but its pixels survives: no EXIF (GPS position,
camera, time), ICC profile, XMP or comment. An image of more than 40 megapixels is refused from
its header before anything is decoded (a decompression bomb: a small file that decodes into
gigabytes), and Pillow's own guard (`Image.MAX_IMAGE_PIXELS`) is held to the same bound.

- `process(data, limits)`: the pure part (bytes in, the stored JPEG and thumbnail out, or
  `PhotoRefused` with the status, reason and what was found); tested without a database.
- `Photos.upload(caller, content_type_header, data)`: `201` for a new photo, `200` for bytes
  already stored (the ref is the SHA-256 of the uploaded bytes: sending again is harmless), `413`
  beyond 8 MB, `415`, `400 bad_image` (a known type that does not decode), `429 over_quota` with
  `Retry-After` when the phone has used its day's quota (photos and bytes uploaded, the city's
  calendar day; settings `handheld_photos_per_day`, `handheld_photo_mb_per_day`).
- `Photos.read(caller, hex, thumb)`: the JPEG (or its thumbnail) when the caller's member uploaded
  it, or a case of the member's grid or handled by the member's terminal names it (its report's
  `photo_ref`/`photo_refs`, its feedback's or verification's `photo_refs`); else `404 not_found`,
  the same answer as for a photo that does not exist: a ref is a content hash, and a 403 would
  tell whoever holds an image that somebody photographed it.

Stored in PostgreSQL (migration 0029) in the upload's own transaction; the device-facing server
runs as the ingest's role, which may insert and read `photos` (database/roles.py).
"""
from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs

import orjson
from PIL import Image, ImageOps

from core.city import CITY_TZ
from core.http import Refused, Reply, Request, Route
from database.pool import WaitingPool, transaction
from handheld.caller import Caller
from handheld.sessions import API
from telemetry.kinds.incident_report import PHOTO_REF

PHOTOS_PATH = f"{API}/photos"
MB = 1024 * 1024
MAX_UPLOAD_BYTES = 8 * MB
MAX_PIXELS = 40_000_000
MAX_SIDE = 1600
THUMB_SIDE = 320
JPEG_QUALITY = 85
THUMB_QUALITY = 75
ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}   # Pillow's format -> media type
STORED_TYPE = "image/jpeg"
POOL_SIZE = 4
DECODING_AT_ONCE = 2            # photos decoded at once: each may take ~100 MB of pixels for a moment
PHOTO_HEADERS = (("Cache-Control", "private, max-age=86400"), ("X-Content-Type-Options", "nosniff"),
                 ("Content-Security-Policy", "default-src 'none'; sandbox"))

Image.MAX_IMAGE_PIXELS = MAX_PIXELS     # Pillow warns beyond it, and refuses beyond twice it, by itself


@dataclass(frozen=True)
class PhotoLimits:
    max_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_PIXELS
    max_side: int = MAX_SIDE
    thumb_side: int = THUMB_SIDE
    per_day: int = 200                   # photos one device may upload a day
    bytes_per_day: int = 300 * MB        # bytes (as uploaded) one device may upload a day

    @classmethod
    def from_settings(cls, settings) -> PhotoLimits:
        return cls(per_day=settings.handheld_photos_per_day,
                   bytes_per_day=int(settings.handheld_photo_mb_per_day * MB))


class PhotoRefused(Exception):
    """Why an upload is refused: the HTTP status, the contract's reason and what was found."""

    def __init__(self, status: int, reason: str, detail: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{reason}: {detail}")
        self.status, self.reason, self.detail, self.headers = status, reason, detail, headers

    def reply(self) -> Reply:
        return Reply(self.status, orjson.dumps({"error": self.reason, "detail": self.detail}),
                     headers=self.headers, refused=self.reason)


@dataclass(frozen=True)
class Processed:
    jpeg: bytes
    thumb: bytes
    width: int
    height: int
    found: str          # the format the upload was (JPEG, PNG, WEBP)


# --- the pure part: bytes in, what is stored out ------------------------------------------------------

def ref_of(data: bytes) -> str:
    """A photo's ref: the SHA-256 of the bytes uploaded (not of what is stored)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sniff(data: bytes) -> str:
    """What the bytes are, by their first bytes: JPEG, PNG, WEBP (what we take), or a name for
    what they are instead (said in the 415)."""
    head = data[:16]
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace").strip()
        return "HEIF/AVIF" if brand in {"heic", "heix", "hevc", "mif1", "msf1", "avif"} else f"a {brand!r} video"
    known = ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"%PDF", "PDF"),
             (b"PK\x03\x04", "a ZIP archive"), (b"\x00\x00\x01\x00", "an icon (ICO)"))
    for magic, name in known:
        if head.startswith(magic):
            return name
    if not data:
        return "nothing (an empty body)"
    if data.lstrip()[:1] == b"<":
        return "markup (HTML, XML or SVG)"
    return "no image format we know"


def process(data: bytes, limits: PhotoLimits = PhotoLimits()) -> Processed:
    """The photo to store, made again from the pixels of `data` (see the module), or PhotoRefused."""
    found = sniff(data)
    if found not in ACCEPTED:
        raise PhotoRefused(415, "unsupported_media_type", f"the bytes are {found}: send JPEG, PNG or WebP")
    try:
        with Image.open(io.BytesIO(data), formats=(found,)) as image:
            width, height = image.size
            if width * height > limits.max_pixels:
                raise PhotoRefused(413, "image_too_large", f"{width}×{height} pixels: at most "
                                   f"{limits.max_pixels / 1e6:g} megapixels")
            if found == "JPEG":       # decode at 1/2, 1/4 or 1/8 when that is still more than we keep
                image.draft("RGB", (limits.max_side, limits.max_side))
            image.load()              # the first frame of an animation
            rgb = _rgb(ImageOps.exif_transpose(image))
    except PhotoRefused:
        raise
    except Image.DecompressionBombError as bomb:
        raise PhotoRefused(413, "image_too_large", str(bomb)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as bad:     # UnidentifiedImageError is an OSError
        raise PhotoRefused(400, "bad_image", f"the {found} data cannot be decoded: {bad}"[:300]) from None
    rgb.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)     # only ever shrinks
    clean = Image.frombytes("RGB", rgb.size, rgb.tobytes())    # the pixels alone: no info, EXIF or profile
    thumb = clean.copy()
    thumb.thumbnail((limits.thumb_side, limits.thumb_side), Image.Resampling.LANCZOS)
    return Processed(_jpeg(clean, JPEG_QUALITY), _jpeg(thumb, THUMB_QUALITY), clean.width, clean.height, found)


def _rgb(image: Image.Image) -> Image.Image:
    """The image as RGB; what is transparent becomes white (a JPEG has no alpha)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB")


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def header_type(content_type_header: str | None) -> str:
    """The media type a Content-Type header names (lower case, without parameters); PhotoRefused
    (415) when it is not one of the types we take: the header must say it sends a photo, and the
    content must be one (a PNG sent as image/jpeg is taken: it is encoded again anyway)."""
    media = (content_type_header or "").split(";", 1)[0].strip().lower()
    if media not in ACCEPTED.values():
        said = f"Content-Type {content_type_header!r}" if content_type_header else "no Content-Type"
        raise PhotoRefused(415, "unsupported_media_type", f"{said}: send image/jpeg, image/png or image/webp")
    return media


def next_day(now: datetime) -> tuple[datetime, int]:
    """The start of the city's day `now` is in, and the seconds until the next one (Retry-After)."""
    local = now.astimezone(CITY_TZ)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, max(1, int((start + timedelta(days=1) - local).total_seconds()) + 1)


# --- the endpoints ---------------------------------------------------------------------------------------

# a photo the caller may see: its member's own upload, or one a case of the member's grid or handled
# by its terminal names (the case's report, or its events: feedback, verification)
_MEMBER_MAY_SEE = """
    p.member_id = %(member)s
    or exists (select 1 from incident_reports r
                 join case_sources s on s.kind = 'report' and s.key = r.terminal_id || '/' || r.report_id
                 join cases c on c.case_id = s.case_id
                where (r.photo_refs @> array[%(ref)s]::text[] or r.photo_ref = %(ref)s)
                  and (c.grid_code = %(grid)s or c.handler = %(terminal)s))
    or exists (select 1 from case_events e join cases c on c.case_id = e.case_id
                where e.detail -> 'photo_refs' ? %(ref)s and (c.grid_code = %(grid)s or c.handler = %(terminal)s))"""


class Photos:
    def __init__(self, dsn: str, limits: PhotoLimits = PhotoLimits()) -> None:
        self.limits = limits
        self._pool = WaitingPool(0, POOL_SIZE, dsn, connect_timeout=5, application_name="gcc-photos")
        self._decoding = threading.BoundedSemaphore(DECODING_AT_ONCE)

    def close(self) -> None:
        self._pool.closeall()

    def _cursor(self):
        """A cursor in a transaction (committed on leaving), or 503 not_stored_yet (send again)."""
        return transaction(self._pool, lambda: PhotoRefused(503, "not_stored_yet", "the database is busy or away: "
                                                            "send again", (("Retry-After", "5"),)))

    # --- upload ------------------------------------------------------------------------------------------
    def upload(self, caller: Caller, content_type_header: str | None, data: bytes) -> Reply:
        """Store a photo the phone sent (see the module): 201 new, 200 the same bytes again, or a refusal."""
        try:
            if len(data) > self.limits.max_bytes:
                raise PhotoRefused(413, "payload_too_large", f"{len(data)} bytes: at most {self.limits.max_bytes}")
            header_type(content_type_header)
            ref = ref_of(data)
            with self._cursor() as cur:
                known = self._known(cur, ref) or self._within_quota(cur, caller, len(data))
            if known:
                return _stored(200, ref, *known)
            with self._decoding:
                photo = process(data, self.limits)
            with self._cursor() as cur:
                cur.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"photos:{caller.device_id}",))
                known = self._known(cur, ref) or self._within_quota(cur, caller, len(data))
                if known:
                    return _stored(200, ref, *known)
                cur.execute("insert into photos (ref, device_id, member_id, terminal_id, grid_code, content_type, "
                            "width, height, bytes, thumb, size_uploaded) "
                            "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) on conflict (ref) do nothing",
                            (ref, caller.device_id, caller.member_id, caller.terminal_id, caller.grid_code,
                             STORED_TYPE, photo.width, photo.height, photo.jpeg, photo.thumb, len(data)))
                if cur.rowcount == 0:            # the same bytes from another phone, a moment ago
                    return _stored(200, ref, *self._known(cur, ref))
        except PhotoRefused as refused:
            return refused.reply()
        return _stored(201, ref, photo.width, photo.height)

    @staticmethod
    def _known(cur, ref: str) -> tuple[int, int] | None:
        cur.execute("select width, height from photos where ref = %s", (ref,))
        return cur.fetchone()

    def _within_quota(self, cur, caller: Caller, size: int) -> None:
        """PhotoRefused (429 over_quota, Retry-After: the next day) when one more photo of `size`
        bytes would take the device beyond its day's photos or bytes."""
        start, retry_after = next_day(datetime.now(CITY_TZ))
        cur.execute("select count(*), coalesce(sum(size_uploaded), 0) from photos "
                    "where device_id = %s and created_at >= %s", (caller.device_id, start))
        photos, uploaded = cur.fetchone()
        if photos + 1 > self.limits.per_day or uploaded + size > self.limits.bytes_per_day:
            raise PhotoRefused(429, "over_quota", f"{photos} photos, {uploaded / MB:.1f} MB today: at most "
                               f"{self.limits.per_day} photos and {self.limits.bytes_per_day / MB:g} MB a day",
                               (("Retry-After", str(retry_after)),))

    # --- read --------------------------------------------------------------------------------------------
    def read(self, caller: Caller, hex_digest: str, thumb: bool = False) -> Reply:
        """A photo the caller may see (see the module), as JPEG; 404 not_found otherwise."""
        ref = f"sha256:{hex_digest}"
        try:
            if not PHOTO_REF.fullmatch(ref):
                raise PhotoRefused(400, "bad_photo_ref", "a photo is named by 64 lowercase hex digits (its SHA-256)")
            with self._cursor() as cur:
                cur.execute(f"select {'thumb' if thumb else 'bytes'} from photos p "
                            f"where p.ref = %(ref)s and ({_MEMBER_MAY_SEE})",
                            {"ref": ref, "member": caller.member_id, "grid": caller.grid_code,
                             "terminal": caller.terminal_id})
                found = cur.fetchone()
            if found is None:
                raise PhotoRefused(404, "not_found", "no photo of that ref that you may see")
        except PhotoRefused as refused:
            return refused.reply()
        return Reply(200, bytes(found[0]), STORED_TYPE, PHOTO_HEADERS)

    # --- routes ------------------------------------------------------------------------------------------
    def routes(self, signed_in: Callable[[Callable[[Caller, Request], Reply]], Callable[[Request], Reply]]
               ) -> list[Route]:
        """POST /handheld/api/v1/photos (≤ 8 MB) and GET /handheld/api/v1/photos/<hex>[?thumb=1], for
        signed-in phones (`signed_in`: handheld.sessions)."""
        return [Route("POST", PHOTOS_PATH, signed_in(self._post), max_body=self.limits.max_bytes),
                Route("GET", PHOTOS_PATH + "/", signed_in(self._get))]

    def _post(self, caller: Caller, request: Request) -> Reply:
        try:
            data = request.body()
        except Refused as refused:
            return refused.reply
        return self.upload(caller, request.headers.get("Content-Type"), data)

    def _get(self, caller: Caller, request: Request) -> Reply:
        path, _, query = request.path.partition("?")
        thumb = parse_qs(query).get("thumb", ["0"])[-1] in ("1", "true")
        return self.read(caller, path[len(PHOTOS_PATH) + 1:], thumb)


def _stored(status: int, ref: str, width: int, height: int) -> Reply:
    return Reply(status, orjson.dumps({"ref": ref, "width": width, "height": height}),
                 headers=(("Location", f"{PHOTOS_PATH}/{ref.removeprefix('sha256:')}"),))
