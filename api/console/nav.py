"""The console's sections, in the order the navigation shows them: the one list to
extend when a page is added (its router goes into ``api/console/pages/__init__.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """One entry of the navigation."""

    label: str
    # Under /console; a page belongs to the section whose path its own starts with.
    path: str


NAV: tuple[Section, ...] = (
    Section("Overview", "/overview"),
    Section("Notifications", "/notifications"),
    Section("Templates", "/templates"),
    Section("Users", "/users"),
    Section("API keys", "/keys"),
    Section("Health", "/health"),
    Section("Webhooks", "/webhooks"),
    Section("Integrations", "/integrations"),
    Section("Topics", "/topics"),
    Section("Broadcasts", "/broadcasts"),
    Section("Flows", "/flows"),
)
