"""The photo checks on their own (handheld.photos.process, no database): the type is read from the
bytes, every piece of metadata is gone after processing, the orientation is applied, big images are
shrunk and decompression bombs refused; and the incident report's `photo_refs` on the wire (count,
length, type)."""
from __future__ import annotations

import io

import orjson
import pytest
from PIL import Image

from handheld.photos import PhotoLimits, PhotoRefused, header_type, process, ref_of, sniff
from telemetry.decoders import DecodeError, decode
from telemetry.kinds.incident_report import KIND, IncidentReport, pg_text_array, photo_hex

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def _image(width: int = 200, height: int = 100) -> Image.Image:
    """Left half red, right half blue: where red ends up says how the picture was turned."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    return image


def _jpeg_with_exif(orientation: int = 1, **save) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "PhoneMaker"                 # Make
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (31.0, 13.0, 48.36), 3: "E", 4: (121.0, 28.0, 26.76)})
    out = io.BytesIO()
    _image().save(out, "JPEG", exif=exif, quality=95, **save)
    return out.getvalue()


def _encoded(image: Image.Image, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def _stored(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _refused(data: bytes, limits: PhotoLimits = PhotoLimits()) -> PhotoRefused:
    with pytest.raises(PhotoRefused) as refused:
        process(data, limits)
    return refused.value


# --- the type, by content ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_jpeg_png_and_webp_are_taken_and_stored_as_jpeg(fmt):
    photo = process(_encoded(_image(), fmt))
    assert photo.found == fmt and _stored(photo.jpeg).format == "JPEG" and _stored(photo.thumb).format == "JPEG"
    assert (photo.width, photo.height) == (200, 100) == _stored(photo.jpeg).size


@pytest.mark.parametrize("fmt, said", [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF")])
def test_other_image_formats_are_refused_saying_what_they_are(fmt, said):
    refused = _refused(_encoded(_image(), fmt))
    assert (refused.status, refused.reason) == (415, "unsupported_media_type") and said in refused.detail


@pytest.mark.parametrize("data, said", [
    (b"<html><script>alert(1)</script></html>", "markup"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "markup"),
    (b"%PDF-1.7 ...", "PDF"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "HEIF"),
    (b"just some text", "no image format"),
    (b"", "empty"),
])
def test_what_is_not_an_image_is_refused_with_what_was_found(data, said):
    refused = _refused(data)
    assert refused.status == 415 and said in refused.detail


def test_the_header_does_not_make_the_type():
    """A GIF sent as image/jpeg is still a GIF (the content decides), and the header alone must
    name one of the types taken."""
    assert header_type("image/jpeg; charset=binary") == "image/jpeg"
    assert _refused(_encoded(_image(), "GIF")).status == 415
    for header in ("text/html", "image/gif", None, ""):
        with pytest.raises(PhotoRefused) as refused:
            header_type(header)
        assert refused.value.status == 415


def test_a_png_labelled_jpeg_is_sniffed_as_png():
    assert sniff(_encoded(_image(), "PNG")) == "PNG"


def test_a_truncated_jpeg_is_a_bad_image_not_a_crash():
    data = _encoded(_image(800, 600), "JPEG")
    refused = _refused(data[: len(data) // 3])
    assert (refused.status, refused.reason) == (400, "bad_image") and "JPEG" in refused.detail


# --- metadata gone, orientation applied ----------------------------------------------------------------

def test_exif_with_gps_is_gone_after_processing():
    data = _jpeg_with_exif()
    sent = _stored(data).getexif()
    assert sent.get_ifd(GPS_IFD)[2] == (31.0, 13.0, 48.36) and sent[0x010F] == "PhoneMaker"   # it was there
    photo = process(data)
    for stored in (_stored(photo.jpeg), _stored(photo.thumb)):
        assert len(stored.getexif()) == 0 and not stored.getexif().get_ifd(GPS_IFD)
        assert not {"exif", "icc_profile", "xmp", "comment"} & set(stored.info)
    assert b"PhoneMaker" not in photo.jpeg and b"Exif" not in photo.jpeg


def test_icc_profile_and_comment_are_gone():
    profile = b"profile-from-the-camera" * 8      # Pillow carries the bytes as they are: any make the point
    data = _encoded(_image(), "JPEG", icc_profile=profile, comment=b"secret note")
    assert "icc_profile" in _stored(data).info and b"secret note" in data
    photo = process(data)
    assert "icc_profile" not in _stored(photo.jpeg).info and b"secret note" not in photo.jpeg
    assert b"profile-from-the-camera" not in photo.jpeg


def test_png_text_chunks_are_gone():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "at home, 3rd floor")
    photo = process(_encoded(_image(), "PNG", pnginfo=info))
    assert b"3rd floor" not in photo.jpeg


def test_the_exif_orientation_is_applied():
    """Orientation 6: the camera was turned, the picture must be turned 90° clockwise to stand up:
    200×100 becomes 100×200, and the left (red) half becomes the top."""
    photo = process(_jpeg_with_exif(orientation=6))
    stored = _stored(photo.jpeg).convert("RGB")
    assert (photo.width, photo.height) == (100, 200) == stored.size
    top, bottom = stored.getpixel((50, 30)), stored.getpixel((50, 170))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    stored = _stored(process(_encoded(image, "PNG")).jpeg).convert("RGB")
    assert min(stored.getpixel((20, 20))) > 245


# --- sizes ---------------------------------------------------------------------------------------------

def test_a_big_photo_is_shrunk_to_1600_and_its_thumbnail_to_320():
    photo = process(_encoded(_image(4000, 3000), "JPEG"))
    assert (photo.width, photo.height) == (1600, 1200) == _stored(photo.jpeg).size
    assert _stored(photo.thumb).size == (320, 240)


def test_a_photo_of_1600_or_less_keeps_its_size():
    photo = process(_encoded(_image(1600, 900), "PNG"))
    assert (photo.width, photo.height) == (1600, 900)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")   # refused all the same
def test_a_decompression_bomb_is_refused_before_it_is_decoded():
    """8000×6000 = 48 megapixels of one colour: a few kilobytes of PNG, ~140 MB once decoded."""
    bomb = _encoded(Image.new("1", (8000, 6000)), "PNG")
    assert len(bomb) < 100_000
    refused = _refused(bomb)
    assert (refused.status, refused.reason) == (413, "image_too_large") and "8000×6000" in refused.detail


def test_a_far_bigger_bomb_is_refused_by_pillows_own_guard_too():
    bomb = _encoded(Image.new("1", (12000, 8000)), "PNG")      # 96 MP: beyond twice MAX_IMAGE_PIXELS
    refused = _refused(bomb, PhotoLimits(max_pixels=10**12))  # our own check out of the way
    assert (refused.status, refused.reason) == (413, "image_too_large")


def test_the_ref_is_the_sha256_of_the_uploaded_bytes():
    assert ref_of(b"abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert photo_hex(ref_of(b"abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert photo_hex("photos/T1/1.jpg") is None and photo_hex("sha256:" + "A" * 64) is None


# --- photo_refs on the wire (the incident report) --------------------------------------------------------

def _incident(**extra) -> bytes:
    return orjson.dumps({"ts": "2024-05-01T08:01:00Z", "report_id": "r1", "category": "noise", "severity": 2,
                         "lat": 31.23, "lon": 121.47, **extra})


def _decode(payload: bytes):
    from datetime import datetime, timezone

    return decode("gcc/v1/terminal/T1/incident", payload, datetime(2024, 5, 1, 8, 5, tzinfo=timezone.utc))


def test_an_incident_names_up_to_four_photos_beside_the_old_photo_ref():
    refs = [ref_of(bytes([n])) for n in range(4)]
    [report] = _decode(_incident(photo_refs=refs, photo_ref="photos/T1/old.jpg"))
    assert isinstance(report, IncidentReport)
    assert report.photo_refs == refs and report.photo_ref == "photos/T1/old.jpg"


def test_an_incident_without_photo_refs_has_none():
    [report] = _decode(_incident())
    assert report.photo_refs == []


def test_other_refs_than_sha256_are_accepted():
    [report] = _decode(_incident(photo_refs=["photos/T1/20240501-0001.jpg"]))
    assert report.photo_refs == ["photos/T1/20240501-0001.jpg"]


@pytest.mark.parametrize("refs", [
    [ref_of(bytes([n])) for n in range(5)],      # five: at most four
    "sha256:" + "a" * 64,                        # a string, not a list
    [1, 2],                                      # not strings
    [""],                                        # empty
    ["x" * 201],                                 # longer than 200
    ["bad\x00ref"],                              # NUL
])
def test_bad_photo_refs_are_refused_naming_the_field(refs):
    with pytest.raises(DecodeError) as refused:
        _decode(_incident(photo_refs=refs))
    assert "photo_refs" in str(refused.value)


def test_photo_refs_are_written_as_a_postgres_array():
    assert pg_text_array([]) == "{}"
    assert pg_text_array(['a"b', "c\\d", "sha256:ab"]) == '{"a\\"b","c\\\\d","sha256:ab"}'
    assert "photo_refs" in KIND.columns and "photo_refs" in KIND.json.fields
