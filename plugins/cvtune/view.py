"""The cvtune view: tuning runs, their reports, ledgers and summaries, served by the api-server.

A FastAPI app that :mod:`cvtune.plugin` mounts at ``/cvtune`` (Airflow 3 ``fastapi_apps``).
It reads the artifact store of a ``cvtune`` connection (``?conn=``, default ``cvtune_default``)
through :class:`~cvtune.hooks.cvtune.CvtuneHook`, so a local root and an ``s3://`` root work
alike, with the connection's settings. Every route needs an authenticated Airflow user: the
api-server's own check (``get_user``: a ``Authorization: Bearer`` JWT, or the UI's session
cookie), the same that guards the REST API. A browser without a session is sent to the login
page and back.

And the user must be allowed to read the runs of the DAG that owns what is served, as the REST
API's ``GET /dags/{dag_id}/dagRuns/...`` asks the auth manager (``is_authorized_dag``, method
``GET``, access entity ``RUN``, the DAG's team): a tuning run's DAG is the ``airflow.dag_id`` its
ledger records, a pipeline report's the ``extra.dag_id`` of its summary. A run started outside
Airflow (the CLI) has no DAG: it is served only to users who may read the runs of *every* DAG
(``is_authorized_dag`` without details, the auth managers' "all DAGs"), since nothing narrower
owns it. Lists show only what the user may open; anything else answers 403.

Routes (all ``GET``):

``/``                                    the runs and pipeline reports (HTML)
``/api/runs``                            the same as JSON
``/runs/{run_id}/report``                a tuning run's report, rendered from its ledger
``/runs/{run_id}/summary.json``          its summary
``/runs/{run_id}/ledger.json``           its ledger
``/reports/{folder}/report.html``        a pipeline report written by ``TuningReportOperator``
                                         (``{folder}``: under ``{artifact root}/reports/``)
``/reports/{folder}/summary.json``       and its summary

Nothing outside the artifact root is served: run ids are validated and report folders must be
relative paths (no ``..``) under ``reports/``.
"""

from __future__ import annotations

import html
import json
import re
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from cvtune.links import DEFAULT_CONN

REPORT_FOLDER_RE = re.compile(r"^[A-Za-z0-9._=+\-]+(/[A-Za-z0-9._=+\-]+)*$")


class LoginRequired(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


async def current_user(request: Request) -> Any:
    """The Airflow user of the request, as the REST API decides it; 401/403 (or, for a browser
    asking for a page, a redirect to the login page) otherwise."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip()) if token else None
    try:
        return await get_user(request, None, credentials)
    except HTTPException as exc:
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            from airflow.api_fastapi.app import get_auth_manager

            raise LoginRequired(get_auth_manager().get_url_login(next_url=str(request.url))) from exc
        raise


class Access:
    """The auth manager's answer for one user, per owning DAG (asked once per DAG per request)."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self._answers: dict[str | None, bool] = {}

    def may_read(self, dag_id: str | None) -> bool:
        if dag_id not in self._answers:
            from airflow.api_fastapi.app import get_auth_manager
            from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
            from airflow.models.dag import DagModel

            details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)) if dag_id else None
            self._answers[dag_id] = get_auth_manager().is_authorized_dag(
                method="GET", access_entity=DagAccessEntity.RUN, details=details, user=self.user
            )
        return self._answers[dag_id]

    def check(self, dag_id: str | None, what: str) -> None:
        if not self.may_read(dag_id):
            owner = f"DAG {dag_id!r}" if dag_id else "every DAG (it was not started by a DAG)"
            raise HTTPException(403, f"{what}: reading it needs read access to the runs of {owner}")


async def access(user: Annotated[Any, Depends(current_user)]) -> Access:
    return Access(user)


AccessDep = Annotated[Access, Depends(access)]


def ledger_dag_id(ledger: Any) -> str | None:
    return (ledger.data.get("airflow") or {}).get("dag_id")


class Artifacts:
    """Read access to one connection's artifact store."""

    def __init__(self, conn_id: str) -> None:
        from cvtune.hooks.cvtune import CvtuneHook

        self.conn_id = conn_id
        try:
            hook = CvtuneHook(conn_id)
            self.root = hook.artifact_root
            self.store = hook.store  # the connection's credentials, not the web server's
        except Exception as exc:  # noqa: BLE001 - a missing or invalid connection is the user's to fix
            raise HTTPException(404, f"connection {conn_id!r}: {exc}") from exc

    def uri(self, *parts: str) -> str:
        return self.store.join(self.root, *parts)

    def read_text(self, uri: str) -> str:
        if not self.store.exists(uri):
            raise HTTPException(404, f"not found: {uri}")
        return self.store.read_text(uri)

    def listdir(self, *parts: str) -> list[str]:
        uri = self.uri(*parts)
        return sorted(self.store.listdir(uri)) if self.store.exists(uri) else []

    def ledger(self, run_id: str):
        from cvtune.errors import ConfigError
        from cvtune.ledger import RunLedger
        from cvtune.tuner import ledger_uri, validate_run_id

        try:
            uri = ledger_uri(self.root, validate_run_id(run_id))
            return RunLedger.load(uri, self.store)
        except ConfigError as exc:
            raise HTTPException(404, str(exc)) from exc


def artifacts(conn: str = DEFAULT_CONN) -> Artifacts:
    return Artifacts(conn)


ArtifactsDep = Annotated[Artifacts, Depends(artifacts)]


def _q(conn_id: str) -> str:
    return "" if conn_id == DEFAULT_CONN else "?" + urlencode({"conn": conn_id})


def run_entries(store_: Artifacts, base: str = "", access_: Access | None = None) -> list[dict[str, Any]]:
    """Every tuning run under the root that ``access_`` may read (all without it), newest first, with
    what the list shows (links under ``base``)."""
    from cvtune.ledger import RunLedger

    out = []
    for name in store_.listdir("runs"):
        run_id = name.rstrip("/").rsplit("/", 1)[-1]
        try:
            ledger = RunLedger.load(store_.uri("runs", run_id, "ledger.json"), store_.store)
        except Exception:  # noqa: BLE001 - a folder without a readable ledger is not a run
            continue
        airflow = ledger.data.get("airflow") or {}
        if access_ is not None and not access_.may_read(airflow.get("dag_id")):
            continue
        info = ledger.summary()
        best = info["best"]
        out.append({
            "run_id": run_id,
            "kind": ledger.data.get("kind"),
            "status": ledger.status,
            "objective": info["objective"],
            "best": None if best is None else {k: best[k] for k in ("trial", "mean", "std")},
            "trials": info["trials"],
            "fold_jobs": info["fold_jobs"],
            "updated": ledger.data.get("updated"),
            "dag_id": airflow.get("dag_id"),
            "dag_run_id": airflow.get("run_id"),
            "report": f"{base}/runs/{quote(run_id)}/report{_q(store_.conn_id)}",
            "ledger": f"{base}/runs/{quote(run_id)}/ledger.json{_q(store_.conn_id)}",
        })
    out.sort(key=lambda r: r.get("updated") or 0, reverse=True)
    return out


def report_entries(store_: Artifacts, base: str = "", access_: Access | None = None) -> list[dict[str, Any]]:
    """Every pipeline report (``reports/{dag_id}/{name}/``) that ``access_`` may read, with its headline."""
    out = []
    for dag in store_.listdir("reports"):
        dag_id = dag.rstrip("/").rsplit("/", 1)[-1]
        for name in store_.listdir("reports", dag_id):
            folder = f"{dag_id}/{name.rstrip('/').rsplit('/', 1)[-1]}"
            try:
                summary = json.loads(store_.read_text(store_.uri("reports", folder, "summary.json")))
            except Exception:  # noqa: BLE001 - a report still being written, or not one
                continue
            if access_ is not None and not access_.may_read(report_dag_id(summary)):
                continue
            cv = summary.get("cv_objective") or {}
            out.append({
                "folder": folder,
                "dag_id": report_dag_id(summary) or dag_id,
                "dag_run_id": (summary.get("extra") or {}).get("dag_run_id"),
                "generated_at": summary.get("generated_at"),
                "metric": cv.get("metric"),
                "mean": cv.get("mean"),
                "model": summary.get("model"),
                "run_ids": summary.get("run_ids"),
                "report": f"{base}/reports/{quote(folder)}/report.html{_q(store_.conn_id)}",
                "summary": f"{base}/reports/{quote(folder)}/summary.json{_q(store_.conn_id)}",
            })
    out.sort(key=lambda r: r.get("generated_at") or "", reverse=True)
    return out


def report_dag_id(summary: dict[str, Any]) -> str | None:
    """The DAG that wrote a pipeline report: its summary says so (the folder name is only a layout)."""
    return (summary.get("extra") or {}).get("dag_id")


def _readable_ledger(store_: Artifacts, run_id: str, access_: Access) -> Any:
    ledger = store_.ledger(run_id)
    access_.check(ledger_dag_id(ledger), f"tuning run {run_id!r}")
    return ledger


def _readable_report(store_: Artifacts, folder: str, access_: Access) -> str:
    """The report folder's URI, once its summary names a DAG whose runs the user may read."""
    uri = store_.uri("reports", _report_folder(folder))
    summary = json.loads(store_.read_text(store_.store.join(uri, "summary.json")))
    access_.check(report_dag_id(summary), f"report {folder!r}")
    return uri


def _run_summary(store_: Artifacts, run_id: str, access_: Access) -> tuple[dict[str, Any], list[Any]]:
    from cvtune.report import build_summary

    ledger = _readable_ledger(store_, run_id, access_)
    summary = build_summary(ledgers=[ledger], best={}, final_model=None, registration=None, predictions=None,
                            stage_seconds={}, extra={"run_id": run_id, "ledger": ledger.uri})
    return summary, [ledger]


def _base(request: Request) -> str:
    """Where this app is mounted (``/cvtune``): links are absolute paths under it."""
    return str(request.scope.get("root_path") or "").rstrip("/")


def _report_folder(folder: str) -> str:
    if not REPORT_FOLDER_RE.match(folder) or ".." in folder.split("/"):
        raise HTTPException(404, f"no report folder {folder!r}")
    return folder


def create_app() -> FastAPI:
    app = FastAPI(title="cvtune", description="cvtune tuning runs and reports", docs_url=None, redoc_url=None,
                  openapi_url=None, dependencies=[Depends(current_user)])

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(exc.url, status_code=307)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, store_: ArtifactsDep, access_: AccessDep) -> HTMLResponse:
        base = _base(request)
        return HTMLResponse(render_index(store_.conn_id, store_.root, run_entries(store_, base, access_),
                                         report_entries(store_, base, access_)))

    @app.get("/api/runs")
    def api_runs(request: Request, store_: ArtifactsDep, access_: AccessDep) -> dict[str, Any]:
        base = _base(request)
        return {"conn_id": store_.conn_id, "artifact_root": store_.root, "runs": run_entries(store_, base, access_),
                "reports": report_entries(store_, base, access_)}

    @app.get("/runs/{run_id}/report", response_class=HTMLResponse)
    def run_report(run_id: str, store_: ArtifactsDep, access_: AccessDep) -> HTMLResponse:
        from cvtune.report import render_html

        summary, ledgers = _run_summary(store_, run_id, access_)
        return HTMLResponse(render_html(summary, ledgers))

    @app.get("/runs/{run_id}/summary.json")
    def run_summary(run_id: str, store_: ArtifactsDep, access_: AccessDep) -> JSONResponse:
        return JSONResponse(_run_summary(store_, run_id, access_)[0])

    @app.get("/runs/{run_id}/ledger.json")
    def run_ledger(run_id: str, store_: ArtifactsDep, access_: AccessDep) -> JSONResponse:
        return JSONResponse(_readable_ledger(store_, run_id, access_).data)

    @app.get("/reports/{folder:path}/report.html", response_class=HTMLResponse)
    def pipeline_report(folder: str, store_: ArtifactsDep, access_: AccessDep) -> HTMLResponse:
        uri = _readable_report(store_, folder, access_)
        return HTMLResponse(store_.read_text(store_.store.join(uri, "report.html")))

    @app.get("/reports/{folder:path}/summary.json")
    def pipeline_summary(folder: str, store_: ArtifactsDep, access_: AccessDep) -> Response:
        uri = _readable_report(store_, folder, access_)
        return Response(store_.read_text(store_.store.join(uri, "summary.json")), media_type="application/json")

    return app


# -- the index page ---------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def render_index(conn_id: str, root: str, runs: list[dict[str, Any]], reports: list[dict[str, Any]]) -> str:
    e = html.escape
    report_rows = "".join(
        f"<tr><td><a href=\"{e(r['report'])}\">{e(r['dag_id'])} · {e(str(r.get('dag_run_id') or r['folder']))}</a></td>"
        f"<td>{e(str(r.get('metric') or '—'))}</td><td class=\"n\">{_fmt(r.get('mean'))}</td>"
        f"<td>{e(_model(r.get('model')))}</td><td>{e(str(r.get('generated_at') or '—'))}</td>"
        f"<td><a href=\"{e(r['summary'])}\">summary.json</a></td></tr>"
        for r in reports
    ) or '<tr><td colspan="6" class="empty">No pipeline report yet.</td></tr>'
    run_rows = "".join(
        f"<tr><td><a href=\"{e(r['report'])}\"><code>{e(r['run_id'])}</code></a></td><td>{e(str(r.get('kind')))}</td>"
        f"<td>{e(str(r['status']))}</td><td class=\"n\">{_fmt((r.get('best') or {}).get('mean'))}</td>"
        f"<td class=\"n\">{sum((r.get('trials') or {}).values())}</td><td class=\"n\">{r['fold_jobs']}</td>"
        f"<td>{e(str(r.get('dag_id') or '—'))}</td><td><a href=\"{e(r['ledger'])}\">ledger.json</a></td></tr>"
        for r in runs
    ) or '<tr><td colspan="8" class="empty">No tuning run yet.</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>cvtune — tuning runs</title>
<style>
body{{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0}}
main{{max-width:1200px;margin:0 auto;padding:24px}}
h1{{font-size:22px;margin:0 0 4px}} h2{{font-size:16px;margin:28px 0 8px}}
.sub{{color:#59636e;font-size:13px}} table{{border-collapse:collapse;width:100%;font-size:13px}}
th,td{{padding:6px 8px;border-bottom:1px solid #eaeef2;text-align:left;white-space:nowrap}}
th{{background:#f6f8fa;font-weight:600}} td.n{{text-align:right;font-variant-numeric:tabular-nums}}
td.empty{{color:#59636e;text-align:center;padding:18px}} a{{color:#0550ae}}
code{{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}}
</style></head><body><main>
<h1>cvtune — tuning runs</h1>
<div class="sub">connection <code>{e(conn_id)}</code> · artifact root <code>{e(root)}</code></div>
<h2>Pipeline reports</h2>
<table><thead><tr><th>DAG run</th><th>metric</th><th>best CV</th><th>model</th><th>generated</th><th></th></tr></thead>
<tbody>{report_rows}</tbody></table>
<h2>Tuning runs</h2>
<table><thead><tr><th>run</th><th>kind</th><th>status</th><th>best CV</th><th>trials</th><th>fold jobs</th><th>DAG</th><th></th></tr></thead>
<tbody>{run_rows}</tbody></table>
</main></body></html>
"""


def _model(model: Any) -> str:
    if not isinstance(model, dict) or model.get("version") is None:
        return "—"
    return f"{model.get('model_package_group')} v{model['version']} ({model.get('approval_status')})"

