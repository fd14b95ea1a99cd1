"""Screenshots of the ledger's screens (基础数据) from a running demo, for README.md: the basic-data
page with a building's floors × houses and a house opened, the search, the review queue with a
member's registration opened, the statistics and the community's 3D view. Called by
scripts/screenshots.py (`make screenshots`) with the admin signed in.

The review queue of a demo is empty until a member registers from a phone, so this puts one
registration in it first, as the handheld's endpoint stores it (ledger.submissions.submit, sealed
with the demo's key), from a member of the community shown."""
from __future__ import annotations

import json
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg2

from config.settings import Settings
from core.ledger import Gender, Registration, Relation, SubmissionKind
from core.orgcodes import Level, ancestor
from ledger import privacy, submissions

WALL, LAPTOP = (1920, 1080), (1366, 768)
WAIT_MS = 30000


def _community_and_house(cur) -> tuple[str, int, int, str]:
    """The first community with a building of many houses: (its code, a house, its household, the grid)."""
    cur.execute("select h.house_id, hh.household_id, h.grid_code from houses h join households hh using (house_id) "
                "join buildings b using (building_id) where b.floors >= 6 order by h.grid_code, h.house_id limit 1")
    house_id, household_id, grid = cur.fetchone()
    return ancestor(grid.strip(), Level.COMMUNITY), house_id, household_id, grid.strip()


def plant_registration(data_dir: Path) -> str:
    """A member's 'new resident' registration in the queue of a community; that community's code."""
    secrets = json.loads((data_dir / "secrets.json").read_text())
    settings = Settings(_env_file=data_dir / "stack.env", pg_password=secrets["pg_password"])
    sealer = privacy.Sealer(secrets["ledger_key"])
    with psycopg2.connect(settings.pg_dsn) as conn, conn.cursor() as cur:
        community, house_id, household_id, grid = _community_and_house(cur)
        cur.execute("select member_id, terminal_id from members where grid_code = %s and retired_at is null limit 1",
                    (grid,))
        member_id, terminal_id = cur.fetchone()
        fields = {"house_id": house_id, "household_id": household_id, "relation": Relation.TENANT.value,
                  "name": "林晓雯", "gender": Gender.FEMALE.value, "birth_date": "1996-04-12",
                  "id_number": "350102199604124020", "phone": "13959112233",
                  "registration": Registration.FLOATING.value, "moved_in": date.today().isoformat(), "tags": []}
        submissions.submit(cur, sealer, str(uuid.uuid4()), SubmissionKind.NEW_RESIDENT.value, grid, community,
                           terminal_id, member_id, None, datetime.now(timezone.utc), "house",
                           str(house_id), fields, [])
    return community


def _shot(page, path: Path) -> None:
    time.sleep(1.5)             # the charts' and the map's own drawing has no event to wait for
    page.screenshot(path=str(path))
    print(path)


def shoot(context, url: str, data_dir: Path, out: Path) -> None:
    community = plant_registration(data_dir)
    page = context.new_page()
    page.set_viewport_size({"width": WALL[0], "height": WALL[1]})
    page.goto(f"{url}/ledger?scope={community}")
    page.locator("#ledger-building").click()
    page.locator("[role=option]").nth(3).click()
    page.locator("#ledger-building-grid button.ledger-house").first.wait_for(timeout=WAIT_MS)
    marked = page.locator("#ledger-building-grid button.ledger-house", has_text="●")
    (marked.first if marked.count() else page.locator("#ledger-building-grid button.ledger-house").nth(5)).click()
    page.locator("#ledger-house-view").wait_for(timeout=WAIT_MS)
    page.fill("#ledger-search", "王")
    page.press("#ledger-search", "Enter")
    page.locator("#ledger-results-table").wait_for(timeout=WAIT_MS)
    _shot(page, out / "ledger.png")
    page.set_viewport_size({"width": LAPTOP[0], "height": LAPTOP[1]})
    _shot(page, out / "ledger-laptop.png")
    page.close()

    page = context.new_page()
    page.set_viewport_size({"width": WALL[0], "height": WALL[1]})
    page.goto(f"{url}/ledger/review?scope={community}")
    row = page.locator("#review-queue-table tbody tr", has_text="林晓雯").last
    row.wait_for(timeout=WAIT_MS)
    row.locator("button[id*=review-pick]").click()
    page.locator("#review-view #review-fields", has_text="林晓雯").first.wait_for(timeout=WAIT_MS)
    _shot(page, out / "ledger-review.png")
    page.close()

    page = context.new_page()
    page.set_viewport_size({"width": WALL[0], "height": WALL[1]})
    page.goto(f"{url}/ledger/stats?scope={community[:9]}")
    page.locator("#ledger-stats-tiles").wait_for(timeout=WAIT_MS)
    page.locator("#ledger-stats .js-plotly-plot").first.wait_for(timeout=WAIT_MS)
    _shot(page, out / "ledger-stats.png")
    page.close()

    page = context.new_page()
    page.set_viewport_size({"width": WALL[0], "height": WALL[1]})
    page.goto(f"{url}/ledger/map?scope={community}")
    page.locator("#ledger-map-3d .js-plotly-plot, #ledger-map-3d.js-plotly-plot").first.wait_for(timeout=WAIT_MS)
    page.locator("path.ledger-map-building").first.wait_for(timeout=WAIT_MS)
    _shot(page, out / "ledger-map.png")
    page.close()
