"""The dashboard's application state, typed: built once by `app.create_app`, kept on the Flask
app (`extensions["gcc"]`) and read by callbacks and handlers through `app_state()`. No module
globals."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app

from config.settings import Settings
from core.city import City
from kpis.indicators import Assessment

if TYPE_CHECKING:
    from dashboard.accounts import Accounts
    from dashboard.case_actions import CaseRules
    from dashboard.commands import Commands
    from dashboard.declarations import Page
    from dashboard.queries import Queries

EXTENSION = "gcc"


@dataclass(frozen=True)
class AppState:
    settings: Settings
    city: City
    queries: Queries
    commands: Commands
    pages: tuple[Page, ...]
    accounts: Accounts
    case_rules: CaseRules
    assessment: Assessment = field(default_factory=Assessment)    # the KPI score and grades (configured)

    @property
    def tile_url(self) -> str | None:
        return self.settings.tile_url

    def page_at(self, path: str | None) -> Page | None:
        for page in self.pages:
            if page.serves(path):
                return page
        return None


def app_state() -> AppState:
    """The state of the app serving the current request or socket event."""
    return current_app.extensions[EXTENSION]
