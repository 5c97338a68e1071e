"""The cvtune Airflow plugin: the cvtune view on the api-server, and a menu entry for it.

Registered through the ``airflow.plugins`` entry point (pyproject.toml), so installing the
package is enough. Airflow loads plugins in every component, so this module stays light: the
FastAPI app (:mod:`cvtune.view`) is built on the first request the api-server routes to it.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from cvtune.links import VIEW_PREFIX


class LazyApp:
    """An ASGI app that builds :func:`cvtune.view.create_app` when it is first called."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from cvtune.view import create_app

            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "cvtune.view:create_app"


class CvtunePlugin(AirflowPlugin):
    name = "cvtune"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": VIEW_PREFIX, "name": "cvtune"}]
    external_views = [
        {
            "name": "cvtune runs",
            "href": f"{VIEW_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "cvtune",
        }
    ]
