"""The leaders' KPI page in Chromium, on a database of its own holding 40 days of history up to now:
a street's leader sees their street's ranking and nothing beside it (the page, the callbacks and the
CSV refuse another street), a click on a row drills down one level keeping the period, the headers
sort, every number says what it is on hover, the CSV holds what the page shows, and the assessment report
downloads as a PDF whose pages render (pdftoppm) with its Chinese text in an embedded font."""
from __future__ import annotations

import csv
import io
import re
import struct
import subprocess
import urllib.error
import urllib.request
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import psycopg2
import pytest
from playwright.sync_api import expect
from psycopg2.extensions import make_dsn, parse_dsn

from core.city import CITY_TZ
from simulator import history

from .conftest import demo_city
from .kpi_helpers import own_database
from .screens import SCREENSHOTS, Dashboard, ensure_logins, session_cookie, sign_in

PLAY, PAUSE = "▶ 播放", "■ 暂停"          # the player's button (assets/replay.js)
# the browser's clock and the replay slider's value (track seconds), read together
SLIDER_NOW = ("() => [performance.now(), Number(document.querySelector('#replay-slider [role=slider]')"
              ".getAttribute('aria-valuenow'))]")

pytestmark = pytest.mark.slow
DATABASE = "gcc_kpis_screens"


@pytest.fixture(scope="module")
def kpi_board(stack, tmp_path_factory):
    city = demo_city()
    street, other = city.streets[1], city.streets[2]
    with own_database(stack, DATABASE) as dsn:
        history.generate(dsn, history.Plan(days=40, seed=5, cases_per_grid_day=1.0, fix_every_s=600,
                                           patrol_min=10, alarms_per_sensor_day=0.0005,
                                           end=datetime.now(timezone.utc)), progress=False)
        ensure_logins(dsn, {"t-kpi-leader": ("leader", street.code), "t-kpi-admin": ("admin", "")})
        board = Dashboard(stack, tmp_path_factory.mktemp("kpis") / "dashboard.log")
        board.env["GCC_PG_DATABASE"] = DATABASE
        board.start()
        try:
            yield board, street, other
        finally:
            board.stop()


def _rows(page) -> list[str]:
    page.locator("#kpis-table").wait_for()
    return [i.removeprefix("kpis-row-") for i in page.locator("#kpis-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.id)")]


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


def test_a_streets_leader_sees_the_ranking_of_their_street_only_and_drills_down_a_level(kpi_board, page):
    board, street, other = kpi_board
    city = demo_city()
    sign_in(page, board.url, "t-kpi-leader")
    page.goto(f"{board.url}/kpis")
    assert page.locator("#kpis-scope-name").inner_text() == street.name
    communities = [c.code for c in city.communities if c.code.startswith(street.code)]
    assert sorted(_rows(page)) == sorted(communities)
    page.locator("#kpis-card-closure").wait_for()
    _shot(page, "kpis-street.png")
    # another street: the page is refused, and so is its CSV (the server decides, not the links)
    page.goto(f"{board.url}/kpis?scope={other.code}")
    page.locator("#shell-refusal").wait_for()
    assert "outside" in page.locator("#shell-refusal").inner_text()
    cookie = session_cookie(board.url, "t-kpi-leader")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{board.url}/kpis.csv?scope={other.code}&table=ranking",
                                                      headers={"Cookie": cookie}), timeout=10)
    assert refused.value.code == 403
    # back, a week: a click on a row (not on its link) opens that community with the same period
    page.goto(f"{board.url}/kpis?period=week")
    first = _rows(page)[0]
    page.locator(f"#kpis-row-{first} td").nth(4).click()
    page.wait_for_url(re.compile(rf"scope={first}&period=week&day=\d{{4}}-\d\d-\d\d"))
    grids = [g.code for g in city.grids if g.code.startswith(first)]
    page.wait_for_function(f"document.querySelector('#kpis-scope-name')?.innerText.includes({city.org_name(first)!r})")
    assert sorted(_rows(page)) == sorted(grids)
    assert page.locator("#kpis-period input[value=week]").is_checked()


def test_the_headers_sort_and_every_number_explains_itself(kpi_board, page):
    board, street, _ = kpi_board
    sign_in(page, board.url, "t-kpi-admin")
    page.goto(f"{board.url}/kpis?scope={street.code[:6]}&period=month")
    _rows(page)
    page.click("#kpis-table th button:has-text('返工率')")        # rework rate: first click sorts highest first
    page.wait_for_function("document.querySelector('#kpis-table th button.kpis-sort')?.closest('tr')"
                           ".innerText.includes('返工率 ▼')")
    rework = [float(t.strip(" %")) for t in page.locator("#kpis-table tbody tr td:nth-child(9)").all_inner_texts()
              if t != "–"]
    assert rework == sorted(rework, reverse=True) and len(rework) >= 2
    title = page.locator("#kpis-card-closure").get_attribute("title")
    assert re.search(r"Closure rate 结案率: cases due to close .*\n[\d,]+ / [\d,]+ = [\d.]+ %", title)
    cell = page.locator("#kpis-table tbody tr td:nth-child(6)").first.get_attribute("title")
    assert "On-time closure" in cell and " / " in cell
    _shot(page, "kpis.png")
    page.set_viewport_size({"width": 1366, "height": 768})
    page.wait_for_function("() => window.innerWidth === 1366 && [...document.querySelectorAll('.kpis-chart .main-svg')]"
                           ".every(svg => Math.abs(svg.getBoundingClientRect().width"
                           " - svg.closest('.js-plotly-plot').clientWidth) < 2)")    # the charts redrawn to fit
    _shot(page, "kpis-laptop.png")


def test_the_csv_download_holds_the_ranking_the_page_shows(kpi_board, page):
    board, street, _ = kpi_board
    sign_in(page, board.url, "t-kpi-leader")
    page.goto(f"{board.url}/kpis?period=month")
    shown = _rows(page)
    registered = int(page.locator("#kpis-card-registered .wall-tile-value").inner_text().replace(",", ""))
    with page.expect_download() as download:
        page.click("#kpis-export-ranking")
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["org_code"] for r in rows] == shown
    assert all(r["org_code"].startswith(street.code) for r in rows)
    # the street's cases are all placed in its grids: the communities' sum is the card's number
    assert sum(int(r["registered"]) for r in rows) == registered > 0
    for r in rows:
        if r["closure_denominator"] != "0":
            assert float(r["closure"]) == pytest.approx(int(r["closure_numerator"]) / int(r["closure_denominator"]),
                                                        abs=1e-4)
    assert page.errors == []


def test_the_assessment_report_downloads_as_a_pdf_with_the_ranking_charts_and_definitions_in_chinese(
        kpi_board, page, tmp_path):
    board, street, _ = kpi_board
    city = demo_city()
    sign_in(page, board.url, "t-kpi-leader")
    page.goto(f"{board.url}/kpis?period=month")
    page.locator("#kpis-export-pdf").wait_for()
    with page.expect_download() as download:
        page.click("#kpis-export-pdf")
    path = tmp_path / "report.pdf"
    download.value.save_as(path)
    assert path.read_bytes()[:5] == b"%PDF-"
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert f"{street.name} · 月度考核报告" in text
    for community in (c for c in city.communities if c.code.startswith(street.code)):
        assert community.name in text                                       # every unit of the ranking
    for words in ("结案率", "按期结案率", "按期处置率", "返工率", "综合得分 Score = on_time_handling * 60", "A ≥ 90"):
        assert words in text
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    embedded = [line.split()[0] for line in fonts.splitlines()[2:] if " yes yes " in line]
    assert embedded and all("Noto-Sans-CJK-SC" in name for name in embedded), fonts   # it reads anywhere
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(path), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    for png in pages:
        width, height = struct.unpack(">II", png.read_bytes()[16:24])
        assert abs(width - 413) <= 1 and abs(height - 585) <= 1             # A4 at 50 dpi
        assert png.stat().st_size > 8_000                                   # drawn on, not blank
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-r", "80", "-png", "-f", "1", "-l", "2", str(path), str(SCREENSHOTS / "kpis-report")],
                   check=True)


def _walk(grid, start: datetime, minutes: int, every_s: int = 5, stop_at_min: int = 60, stop_min: int = 10):
    """A member's walk inside the grid: a fix every `every_s`, standing still for `stop_min` minutes
    from `stop_at_min`."""
    import math
    import random

    from shapely.geometry import Point

    rng = random.Random(3)
    minx, miny, maxx, maxy = grid.boundary.bounds
    p = grid.boundary.representative_point()
    x, y, heading, rows = p.x, p.y, 0.0, []
    for i in range(minutes * 60 // every_s):
        t = start + timedelta(seconds=i * every_s)
        standing = stop_at_min * 60 <= i * every_s < (stop_at_min + stop_min) * 60
        if not standing:                     # straight on, turning a little; back from the grid's edge
            heading += rng.gauss(0, 0.15)
            nx, ny = x + 6 / 111_320 * math.cos(heading), y + 6 / 111_320 * math.sin(heading)
            if not grid.boundary.contains(Point(nx, ny)):
                heading += math.pi
                nx, ny = x + 6 / 111_320 * math.cos(heading), y + 6 / 111_320 * math.sin(heading)
            x, y = nx, ny
        rows.append((t, x, y))
    return rows


def test_the_replay_plays_a_members_track_and_the_speed_control_changes_the_pace(kpi_board, page, stack):
    board, street, _ = kpi_board
    city = demo_city()
    grid = next(g for g in city.grids if g.code.startswith(street.code))
    member = next(m for m in city.members if m.grid_code == grid.code)
    today = datetime.now(CITY_TZ).date()
    start = datetime.combine(today, time(0, 10), CITY_TZ)
    fixes = _walk(grid, start, 90)
    dsn = make_dsn(**{**parse_dsn(stack.settings().pg_dsn), "dbname": DATABASE})
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("delete from positions where terminal_id = %s and time >= %s", (member.terminal_id, start))
        cur.executemany("insert into positions (time, terminal_id, member_id, grid_code, lat, lon, source) "
                        "values (%s, %s, %s, %s, %s, %s, 'gcc')",
                        [(t, member.terminal_id, member.member_id, grid.code, lat, lon) for t, lon, lat in fixes])
    conn.close()
    sign_in(page, board.url, "t-kpi-leader")
    page.goto(f"{board.url}/replay?member={member.terminal_id}&day={today.isoformat()}")
    page.click("#replay-load")
    page.wait_for_function("!document.querySelector('#replay-play').disabled", timeout=20000)
    assert f"{len(fixes):,} fixes" in page.locator("#replay-status").inner_text()
    stopped = page.locator("#replay-fact-stopped").inner_text()
    assert re.search(r"\b1[01] min · 1 stops", stopped), stopped     # the 10 minutes still, and the metres around
    assert re.search(r"\d+ % \(\d+/\d+ cells", page.locator("#replay-fact-coverage").inner_text())
    assert "yes" in page.locator("#replay-fact-inspected").inner_text()

    def rate(speed: int, distance: float) -> float:
        """Track seconds per real second at `speed`, timed by the browser's own clock while the
        player moves the slider `distance` track seconds on (an event: the slider's value)."""
        page.click("#replay-speed")
        page.click(f"[role=option]:has-text('{speed}×')")
        page.click("#replay-play")                                                   # play
        expect(page.locator("#replay-play")).to_have_text(PAUSE, timeout=20_000)
        began, before = page.evaluate(SLIDER_NOW)
        ended, after = page.wait_for_function(f"([before, distance]) => {{ const [t, v] = ({SLIDER_NOW})(); "
                                              "return v >= before + distance ? [t, v] : null; }",
                                              arg=[before, distance], timeout=30_000).json_value()
        page.click("#replay-play")                                                   # pause
        expect(page.locator("#replay-play")).to_have_text(PLAY, timeout=20_000)
        return (after - before) / ((ended - began) / 1000)

    slow, fast = rate(1, 2.0), rate(20, 40.0)
    assert 0.25 <= slow <= 3 and fast >= 8 * slow, (slow, fast)                   # ~1 and ~20 track s a second
    assert page.locator("#replay-time").inner_text().startswith("00:1")
    _shot(page, "replay.png")
    # who was where at 00:40: this member, from the stored fixes
    page.fill("#replay-at", f"{today.isoformat()}T00:40")
    page.click("#replay-who-show")
    page.locator("#replay-who-count").wait_for()
    assert member.name in page.locator("#replay-who-list").inner_text()
    page.click("#replay-play")                                   # left while playing: the player stops quietly
    page.locator("#shell-nav a", has_text="KPIs").click()
    page.wait_for_url(re.compile(r"/kpis"))
    page.clock.run_for(600)                                      # the player's next frames come, and find no map
    assert page.errors == []
