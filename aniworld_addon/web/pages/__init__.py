"""Server-rendered pages of the web panel; `routes` is added to the app by create_app()."""

from __future__ import annotations

from . import admin, auth, library, queue
from .common import error_context, routes

__all__ = ["admin", "auth", "error_context", "library", "queue", "routes"]
