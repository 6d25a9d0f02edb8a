"""The page templates: autoescaped Jinja2 with a few filters for times and statuses."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fastapi.templating import Jinja2Templates

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


def format_time(moment: datetime | None) -> str:
    """UTC, to the minute: clinics read it, nobody parses it."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


templates.env.filters["time"] = format_time
