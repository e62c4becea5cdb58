"""FastAPI app of the "Migration waves" view: the dashboard page, a JSON API and the evidence packs.

Airflow mounts plugin apps outside its own auth, so every route here checks the caller itself,
the same way Airflow's API does: the JWT from `Authorization: Bearer ...` or from the `_token`
cookie the Airflow UI holds, validated by Airflow's auth manager (`get_user_from_token`: signature,
expiry, audience, revocation). A wave is shown only to users who may read its DAG. Every route is
a GET: the view reads the evidence store and never writes.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

    from migration_waves.spec.models import WaveSpec

URL_PREFIX = "/migration-waves"
TOKEN_COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


class LoginRequired(HTTPException):
    """No valid Airflow session: the page redirects to the login, the API answers 401."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=status.HTTP_401_UNAUTHORIZED, detail=detail)


def _token(request: Request) -> str | None:
    # An explicit credential wins over the ambient cookie, as in Airflow's own `get_user`.
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(TOKEN_COOKIE)


async def airflow_user(request: Request) -> BaseUser:
    """The logged-in Airflow user, or LoginRequired."""
    from airflow.api_fastapi.app import get_auth_manager
    from jwt import ExpiredSignatureError, InvalidTokenError

    token = _token(request)
    if not token:
        raise LoginRequired("not authenticated: log in to Airflow (or send an Airflow JWT as Bearer token)")
    try:
        return await get_auth_manager().get_user_from_token(token)
    except ExpiredSignatureError as exc:
        raise LoginRequired("the Airflow session expired; log in again") from exc
    except InvalidTokenError as exc:
        raise LoginRequired("the Airflow token is not valid; log in again") from exc


# Any: BaseUser is imported for type checking only, and FastAPI resolves these hints at runtime.
UserDep = Annotated[Any, Depends(airflow_user)]


def specs_dir() -> Path:
    """Where the wave specs are: MIGRATION_WAVES_SPECS, as for the DAG factory, else include/waves."""
    from migration_waves.airflow.dag_factory import SPECS_ENV, _default_specs_dir

    return Path(os.environ.get(SPECS_ENV) or _default_specs_dir())


def _can_read(user: BaseUser, wave: str) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    from migration_waves.airflow.dag_factory import dag_id_for

    return bool(
        get_auth_manager().is_authorized_dag(method="GET", user=user, details=DagDetails(id=dag_id_for(wave)))
    )


def visible_specs(user: BaseUser) -> list[WaveSpec]:
    """The waves whose DAG the user may read, in wave order."""
    from migration_waves.evidence.dashboard import load_specs

    return [s for s in load_specs(specs_dir()) if _can_read(user, s.wave)]


def _spec(user: BaseUser, wave: str) -> WaveSpec:
    from migration_waves.evidence.dashboard import load_specs

    for spec in load_specs(specs_dir()):
        if spec.wave == wave:
            if not _can_read(user, wave):
                raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not read the DAG of wave {wave}")
            return spec
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no wave {wave!r} in {specs_dir()}")


def create_app() -> FastAPI:
    """The app the plugin mounts at URL_PREFIX."""
    app = FastAPI(
        title="Migration waves",
        description="Read-only waves dashboard and evidence packs; requires an Airflow login.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        # A browser asking for a page goes to the Airflow login and comes back; API clients get 401.
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            from airflow.api_fastapi.app import get_auth_manager

            login = get_auth_manager().get_url_login(next_url=str(request.url))
            return RedirectResponse(login, status_code=status.HTTP_303_SEE_OTHER)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/", response_class=HTMLResponse)
    def page(user: UserDep) -> HTMLResponse:
        from migration_waves.airflow.dag_factory import dag_id_for
        from migration_waves.airflow.ui.page import render_dashboard
        from migration_waves.evidence.dashboard import dashboard, latest_plan

        specs = visible_specs(user)
        waves = dashboard(specs)
        html = render_dashboard(
            waves,
            user=user.get_name(),
            dag_ids={w.wave: dag_id_for(w.wave) for w in waves},
            plan=latest_plan(specs),
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/waves")
    def waves(user: UserDep) -> list[dict[str, Any]]:
        from migration_waves.evidence.dashboard import dashboard

        return [w.model_dump(mode="json") for w in dashboard(visible_specs(user))]

    @app.get("/api/waves/{wave}")
    def wave(wave: str, user: UserDep) -> dict[str, Any]:
        from migration_waves.evidence.dashboard import dashboard

        spec = _spec(user, wave)
        # Status needs the other waves' acceptance (a wave is blocked until its `after` waves pass).
        views = {w.wave: w for w in dashboard(visible_specs(user))}
        return views[spec.wave].model_dump(mode="json")

    @app.get("/api/waves/{wave}/runs/{run}")
    def run(wave: str, run: str, user: UserDep) -> dict[str, Any]:
        from migration_waves.evidence.dashboard import list_runs, run_view, state_root_of

        spec = _spec(user, wave)
        root = state_root_of(spec)
        if run not in list_runs(root, spec.wave):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"wave {wave} has no run {run!r}")
        return run_view(spec, root, run).model_dump(mode="json")

    @app.get("/runs/{wave}/{run}/files/{path:path}")
    def run_file(wave: str, run: str, path: str, user: UserDep) -> Response:
        from migration_waves.evidence.dashboard import read_run_file

        spec = _spec(user, wave)
        try:
            payload, name = read_run_file(spec, run, path)
        except (FileNotFoundError, ValueError) as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if name.endswith(".md"):
            media = "text/markdown"
        if media.startswith("text/") or media == "application/json":
            media += "; charset=utf-8"
        return Response(payload, media_type=media, headers={"X-Content-Type-Options": "nosniff"})

    return app


app = create_app()
