"""ledger.privacy: sealing opens only with its key and its field, the index is keyed and exact,
masks show what a screen may show, and ID numbers are checked as GB 11643 says."""
from __future__ import annotations

from datetime import date

import pytest

from ledger import privacy
from ledger.privacy import ID_NUMBER, PHONE, Sealer, SealError

KEY = privacy.new_key()
ID = "11010519491231002X"          # GB 11643's own example (born 1949-12-31, check character X)


def test_a_sealed_value_opens_to_itself_and_holds_nothing_of_it_in_clear():
    sealer = Sealer(KEY)
    sealed = sealer.seal(ID_NUMBER, ID)
    assert ID.encode() not in sealed and ID[:6].encode() not in sealed
    assert sealer.open(ID_NUMBER, sealed) == ID
    assert sealer.seal(ID_NUMBER, ID) != sealed          # a fresh nonce each time


def test_a_sealed_value_does_not_open_with_another_key_another_field_or_a_flipped_bit():
    sealer, sealed = Sealer(KEY), Sealer(KEY).seal(ID_NUMBER, ID)
    with pytest.raises(SealError):
        Sealer(privacy.new_key()).open(ID_NUMBER, sealed)
    with pytest.raises(SealError):
        sealer.open(PHONE, sealed)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(SealError):
        sealer.open(ID_NUMBER, bytes(tampered))


def test_the_index_is_equal_for_equal_values_and_keyed():
    a, b = Sealer(KEY), Sealer(privacy.new_key())
    assert a.index(ID_NUMBER, ID) == a.index(ID_NUMBER, ID)
    assert a.index(ID_NUMBER, ID) != a.index(ID_NUMBER, ID[:-1] + "9")
    assert a.index(ID_NUMBER, ID) != b.index(ID_NUMBER, ID)          # nobody without the key can test a guess
    assert a.index(ID_NUMBER, "13812345678") != a.index(PHONE, "13812345678")


def test_masks_show_the_first_and_last_digits_only():
    assert privacy.mask_id_number("350102199003071234") == "3501**********1234"
    assert privacy.mask_phone("13812345678") == "138****5678"
    assert privacy.mask_id_number("E1234567") == "******67"          # a short document number


def test_id_numbers_are_checked_for_form_birth_date_and_check_character():
    assert privacy.check_id_number(ID) is None
    assert privacy.check_id_number(ID, date(1949, 12, 31)) is None
    assert "birth date is not the resident's" in privacy.check_id_number(ID, date(1950, 1, 1))
    assert "check digit" in privacy.check_id_number(ID[:-1] + "1")
    assert "not a date" in privacy.check_id_number("110105194913310021")
    assert "17 digits" in privacy.check_id_number("1101051949")
    assert privacy.normalize_id_number(" 11010519491231002x ") == ID


def test_phones_are_normalized_and_checked():
    assert privacy.normalize_phone("+86 138-1234-5678") == "13812345678"
    assert privacy.check_phone("13812345678") is None
    assert privacy.check_phone("12ab") is not None


def test_a_key_of_the_wrong_size_or_form_is_refused_without_showing_it():
    with pytest.raises(ValueError, match="32 bytes"):
        privacy.parse_key("c2hvcnQ")
    with pytest.raises(ValueError, match="base64url"):
        privacy.parse_key("not base64 at all!!")


def test_a_field_sealed_for_json_opens_and_carries_its_index_and_mask():
    sealer = Sealer(KEY)
    value = sealer.sealed_field(PHONE, "13812345678")
    assert value["masked"] == "138****5678" and value["index"] == sealer.index(PHONE, "13812345678").hex()
    assert "13812345678" not in str(value)
    assert sealer.open_field(PHONE, value) == "13812345678"
    with pytest.raises(SealError):
        sealer.open_field(PHONE, {"sealed": "not base64!"})
