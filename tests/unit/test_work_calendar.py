"""Working time across weekends, national holidays and make-up working days (the 2026 notice:
Mid-Autumn 25-27 Sep, National Day 1-7 Oct, Sunday 20 Sep and Saturday 10 Oct worked), and the
time-limit table's units. Expected times are written out by hand from the notice, not computed."""
from __future__ import annotations

import logging
from datetime import date, datetime, time

import pytest

from cases.calendar import DaySource, WorkCalendar, library_day
from cases.limits import Limit, LimitTable, Stage, Unit, Urgency, categories
from core.catalogue import INCIDENT_CATEGORIES, AlarmType
from core.city import CITY_TZ

CAL = WorkCalendar()          # 8:30-12:00, 14:00-18:00


def at(y, mo, d, h=0, mi=0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=CITY_TZ)


@pytest.mark.parametrize("start, spec, deadline", [
    (at(2026, 9, 30, 10), "1wd", at(2026, 10, 8, 10)),            # over the whole National Day week
    (at(2026, 9, 30, 16), "5wh", at(2026, 10, 8, 11, 30)),        # 2 h on the 30th, 3 h on the 8th
    (at(2026, 10, 9, 15), "1wd", at(2026, 10, 10, 15)),           # Saturday 10 Oct is a working day
    (at(2026, 10, 10, 17), "2wh", at(2026, 10, 12, 9, 30)),       # ...and Sunday 11 Oct is not
    (at(2026, 9, 24, 17), "2wh", at(2026, 9, 28, 9, 30)),         # Mid-Autumn Friday to Sunday
    (at(2026, 9, 18, 17), "2wh", at(2026, 9, 20, 9, 30)),         # Sunday 20 Sep is worked
    (at(2026, 11, 6, 17), "2wh", at(2026, 11, 9, 9, 30)),         # an ordinary weekend
    (at(2026, 10, 3, 10), "1wh", at(2026, 10, 8, 9, 30)),         # started on a holiday: the next period
    (at(2026, 11, 4, 11, 30), "1wh", at(2026, 11, 4, 14, 30)),    # the lunch break is not worked
    (at(2026, 11, 4, 20), "15wd", at(2026, 11, 25, 18)),          # 15 working days from the evening
    (at(2026, 10, 4, 23, 50), "30m", at(2026, 10, 5, 0, 20)),     # clock minutes ignore all of it
    (at(2026, 10, 1, 9), "2h", at(2026, 10, 1, 11)),
])
def test_a_limit_ends_where_the_working_calendar_says(start, spec, deadline):
    assert CAL.add(start, Limit.parse(spec)) == deadline


def test_working_minutes_between_two_times_skip_nights_weekends_and_holidays():
    assert CAL.working_minutes_between(at(2026, 9, 30, 16), at(2026, 10, 8, 11, 30)) == 300
    assert CAL.working_minutes_between(at(2026, 10, 8, 10), at(2026, 9, 30, 10)) == 0


def test_an_admin_override_wins_over_the_notice():
    no_saturday = WorkCalendar(overrides={date(2026, 10, 10): False})
    assert no_saturday.add(at(2026, 10, 9, 15), Limit.parse("1wd")) == at(2026, 10, 12, 15)
    extra_day = WorkCalendar(overrides={date(2026, 11, 7): True})   # a Saturday
    assert extra_day.add(at(2026, 11, 6, 17), Limit.parse("2wh")) == at(2026, 11, 7, 9, 30)


def test_the_notice_names_holidays_and_make_up_days():
    assert library_day(date(2026, 10, 1)) .workday is False
    assert library_day(date(2026, 10, 1)).source is DaySource.NOTICE
    made_up = library_day(date(2026, 10, 10))
    assert made_up.workday and made_up.name.startswith("make-up working day")


def test_a_year_without_a_notice_is_mon_to_fri_without_statutory_holidays_and_says_so(caplog):
    from cases.calendar import _library_year

    _library_year.cache_clear()
    with caplog.at_level(logging.WARNING, logger="cases.calendar"):
        new_year = library_day(date(2027, 1, 1))           # a Friday, and a statutory holiday
    assert (new_year.workday, new_year.source) == (False, DaySource.PROVISIONAL)
    assert library_day(date(2027, 1, 4)).workday and not library_day(date(2027, 1, 2)).workday
    assert any("no notice for 2027" in r.message for r in caplog.records)


def test_working_hours_must_be_ordered_periods():
    with pytest.raises(ValueError):
        WorkCalendar(hours=((time(14), time(12)),))
    with pytest.raises(ValueError):
        WorkCalendar(hours=((time(8), time(13)), (time(12), time(18))))


def test_limits_read_their_units_and_refuse_what_is_not_one():
    assert Limit.parse("30m") == Limit(30, Unit.MINUTES)
    assert Limit.parse("2h") == Limit(120, Unit.MINUTES)
    assert Limit.parse("5wh") == Limit(5, Unit.WORKING_HOURS)
    assert Limit.parse("1.5wd") == Limit(1.5, Unit.WORKING_DAYS)
    for bad in ("", "3", "2 weeks", "-1h", "0m"):
        with pytest.raises(ValueError):
            Limit.parse(bad)


def test_every_category_has_a_limit_for_every_stage_and_urgency():
    table = LimitTable.defaults()
    assert table.missing() == []
    assert set(categories()) >= set(INCIDENT_CATEGORIES) | {a.value for a in AlarmType}
    assert table.limit("manhole_cover", Stage.HANDLE, Urgency.URGENT) == Limit(120, Unit.MINUTES)
    assert table.limit("exposed_garbage", Stage.HANDLE, Urgency.NORMAL) == Limit(1, Unit.WORKING_DAYS)
    assert table.limit("dirty_road", Stage.HANDLE, Urgency.NORMAL) == Limit(5, Unit.WORKING_HOURS)
    assert table.limit("illegal_construction", Stage.HANDLE, Urgency.NORMAL) == Limit(15, Unit.WORKING_DAYS)
    assert table.limit("noise", Stage.REGISTER, Urgency.URGENT) == Limit(10, Unit.MINUTES)
    assert table.limit("noise", Stage.DISPATCH, Urgency.NORMAL) == Limit(30, Unit.MINUTES)


def test_the_most_specific_row_wins():
    from cases.limits import ANY, LimitRow

    table = LimitTable.of(2, [*LimitTable.defaults().rows,
                              LimitRow("noise", Stage.REGISTER, ANY, Limit(5, Unit.MINUTES)),
                              LimitRow("noise", Stage.REGISTER, "normal", Limit(20, Unit.MINUTES))])
    assert table.limit("noise", Stage.REGISTER, Urgency.NORMAL) == Limit(20, Unit.MINUTES)
    assert table.limit("noise", Stage.REGISTER, Urgency.URGENT) == Limit(5, Unit.MINUTES)
    assert table.limit("dirty_road", Stage.REGISTER, Urgency.URGENT) == Limit(10, Unit.MINUTES)
