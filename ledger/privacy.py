"""Personal data of the ledger, private by design (PIPL): an ID number (身份证号) or a phone is kept
only **sealed** (AES-256-GCM, by the application, before it reaches the database), beside a
**keyed index** for exact-match search and duplicates (HMAC-SHA256: equal values give equal
indexes, and nobody without the key can test a guess) and its **masked** form, the one every
screen shows (`3501**********1234`, `138****5678`).

The key is the deployment's secret GCC_LEDGER_KEY (32 random bytes, base64url; the local demo
makes one in its data dir). From it, HKDF derives two keys: one seals, one indexes; a sealed value
names the version of the key it was sealed with (its first byte), so a new key can be rolled in.
A field's name is bound into its sealing (the AES-GCM associated data) and its index, so a
sealed phone cannot be passed off as an ID number.

`Sealer(key)`: `seal(field, text) -> bytes`, `open(field, sealed) -> str`, `index(field, text) ->
bytes`, and for JSON (a submission's payload, a history row): `sealed_field(field, text) -> dict`
({"sealed": base64, "index": hex, "masked": …}) and `open_field(field, dict) -> str`; the pure
helpers `mask_id_number`, `mask_phone`, `check_id_number`, `normalize_*`."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from datetime import date

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = 1                       # the first byte of every sealed value: the key it was sealed with
ID_NUMBER, PHONE = "id_number", "phone"      # the personal fields sealed (their names bind the sealing)

_ID18 = re.compile(r"\d{17}[\dX]")
_PHONE = re.compile(r"\+?\d{5,20}")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


class SealError(ValueError):
    """A sealed value that does not open with this key (tampered, another key, another field)."""


def new_key() -> str:
    """A fresh GCC_LEDGER_KEY (base64url, 32 random bytes)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def parse_key(text: str) -> bytes:
    """GCC_LEDGER_KEY's 32 bytes, or ValueError saying what is wrong (never the key itself)."""
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("GCC_LEDGER_KEY is not base64url") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"GCC_LEDGER_KEY must hold {KEY_BYTES} bytes, it holds {len(raw)}")
    return raw


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"gcc-ledger/" + purpose).derive(master)


class Sealer:
    """Seals, opens and indexes personal fields with one deployment key (see the module)."""

    def __init__(self, key: str | bytes) -> None:
        master = parse_key(key) if isinstance(key, str) else key
        if len(master) != KEY_BYTES:
            raise ValueError(f"a ledger key holds {KEY_BYTES} bytes")
        self._aead = AESGCM(_derive(master, b"seal"))
        self._index_key = _derive(master, b"index")

    def seal(self, field: str, text: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return bytes([VERSION]) + nonce + self._aead.encrypt(nonce, text.encode(), field.encode())

    def open(self, field: str, sealed: bytes | memoryview) -> str:
        sealed = bytes(sealed)
        if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[0] != VERSION:
            raise SealError(f"not a sealed {field} of this key's version")
        try:
            return self._aead.decrypt(sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:], field.encode()).decode()
        except InvalidTag:
            raise SealError(f"the sealed {field} does not open with this key") from None

    def index(self, field: str, text: str) -> bytes:
        """The keyed index of a normalized value (equal values, equal indexes; 32 bytes)."""
        return hmac.new(self._index_key, field.encode() + b"\0" + text.encode(), hashlib.sha256).digest()

    def sealed_field(self, field: str, text: str) -> dict[str, str]:
        """A personal field as JSON may hold it: sealed (base64), its index (hex) and its mask."""
        mask = MASKS[field]
        return {"sealed": base64.b64encode(self.seal(field, text)).decode(), "index": self.index(field, text).hex(),
                "masked": mask(text)}

    def open_field(self, field: str, value: dict) -> str:
        """A `sealed_field` opened (SealError when it is not one of this key's)."""
        try:
            sealed = base64.b64decode(value["sealed"], validate=True)
        except (KeyError, TypeError, binascii.Error, ValueError):
            raise SealError(f"not a sealed {field}") from None
        return self.open(field, sealed)


# --- the values themselves ---------------------------------------------------------------------
def normalize_id_number(text: str) -> str:
    """An ID number as it is compared and stored: no spaces, the check letter upper case."""
    return "".join(text.split()).upper()


def normalize_phone(text: str) -> str:
    """A phone as it is compared and stored: digits (and a leading +) only; +86 dropped."""
    digits = "".join(ch for ch in text if ch.isdigit() or ch == "+")
    return digits[3:] if digits.startswith("+86") else digits


def check_id_number(text: str, birth_date: date | None = None) -> str | None:
    """Why a mainland resident ID number (GB 11643, 18 characters) is not valid, or None: its
    form, its birth date, its check character, and (given) the resident's birth date."""
    if not _ID18.fullmatch(text):
        return "an ID number is 17 digits and a check digit or X"
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return "the ID number's birth date is not a date"
    if birth_date is not None and born != birth_date:
        return "the ID number's birth date is not the resident's"
    if _CHECK[sum(int(d) * w for d, w in zip(text[:17], _WEIGHTS, strict=True)) % 11] != text[17]:
        return "the ID number's check digit is wrong"
    return None


def check_phone(text: str) -> str | None:
    if not _PHONE.fullmatch(text):
        return "a phone is 5 to 20 digits (a leading + allowed)"
    return None


def mask_id_number(text: str) -> str:
    """`350102199003071234` → `3501**********1234`; a short document number keeps its last 2."""
    if len(text) >= 12:
        return text[:4] + "*" * (len(text) - 8) + text[-4:]
    return "*" * max(len(text) - 2, 0) + text[-2:]


def mask_phone(text: str) -> str:
    """`13812345678` → `138****5678`; a short number keeps its last 2."""
    if len(text) >= 7:
        return text[:3] + "*" * (len(text) - 7) + text[-4:]
    return "*" * max(len(text) - 2, 0) + text[-2:]


MASKS = {ID_NUMBER: mask_id_number, PHONE: mask_phone}
