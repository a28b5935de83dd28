"""The interactive API explorer at ``/docs``, served whole by the gateway.

FastAPI's default ``/docs`` page loads Swagger UI from a CDN, which leaves it blank on a lab
network without internet access. The gateway serves Swagger UI's files (Swagger UI 5, which
reads the OpenAPI 3.1 documents FastAPI writes) from the ``fastapi-offline`` package instead,
through FastAPI's documented hooks for self-hosted docs, and turns off what of it would reach
elsewhere (the spec validator badge).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS = f"{DOCS_PATH}/assets"
REDIRECT_PATH = f"{DOCS_PATH}/oauth2-redirect"
#: Swagger UI's files as the fastapi-offline package ships them
SWAGGER_FILES = files("fastapi_offline") / "static"


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI on ``app`` at ``/docs`` from the package's own copy of its files.

    ``app`` must be built with ``docs_url=None`` and ``redoc_url=None`` (ReDoc, too, would
    come from a CDN)."""
    app.mount(ASSETS, StaticFiles(directory=str(SWAGGER_FILES)), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            oauth2_redirect_url=REDIRECT_PATH,
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
        )

    @app.get(REDIRECT_PATH, include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


__all__ = ["DOCS_PATH", "install_docs"]
