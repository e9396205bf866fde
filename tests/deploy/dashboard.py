"""What the provisioned Grafana dashboard queries, for the tests that check it."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/dashboards/herald.json"


def dashboard_metrics() -> set[str]:
    """Metric names the Herald dashboard's panels query."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return set(re.findall(r"\b((?:herald|temporal)_[a-z_]+)\b", " ".join(exprs)))


def family(name: str) -> str:
    """A sample or series name without its histogram/counter suffix."""
    return re.sub(r"_(bucket|count|sum|total|created)$", "", name)
