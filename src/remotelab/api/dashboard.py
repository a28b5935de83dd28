"""The dashboard, the lab's front desk: one page the gateway serves at ``/dashboard``.

The page itself (HTML, its scripts — ``dashboard.js`` the lab view, ``forms.js`` the submit
form, ``plots.js`` the plots, ``pages.js`` the experiment, run and audit pages — a style sheet
and the vendored uPlot library in ``static/``) needs no token and holds no data: in the
browser it asks for the user's API token and reads everything through the gateway's own
``/api/v1`` routes, which check the token's role as for any other client. Nothing is loaded
from elsewhere, so it works in a lab without internet access (see ``docs/dashboard.md``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

DASHBOARD_PATH = "/dashboard"
STATIC_DIR = Path(__file__).parent / "static"
#: the page may load only its own files and talk only to its own gateway
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def dashboard_url(base_url: str) -> str:
    """The dashboard's address on the gateway at ``base_url`` (``http://host:port``)."""
    return base_url.rstrip("/") + DASHBOARD_PATH


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard on ``app``: ``/`` redirects to it; its files under
    ``/dashboard/static``. None of these routes is part of the API's OpenAPI document."""

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(DASHBOARD_PATH)

    @app.get(DASHBOARD_PATH, include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "dashboard.html", headers=HEADERS)

    app.mount(
        f"{DASHBOARD_PATH}/static",
        StaticFiles(directory=STATIC_DIR),
        name="dashboard-static",
    )


__all__ = ["DASHBOARD_PATH", "dashboard_url", "install_dashboard"]
