"""The cvtune view on the real api-server app (Airflow's create_app, simple auth manager): runs,
reports, ledgers and summaries from a local and an s3:// root, for authenticated users only, and
only for those who may read the runs of the DAG that owns them (multi-team mode: a team's DAG)."""

from __future__ import annotations

import json
import os

import pytest

from cvtune import report
from cvtune.states import TrialState
from cvtune.store import ArtifactStore
from tests.test_report import make_ledger, params

PASSWORD = "s3cret-pw"
TEAM_DAG = "research_pipeline"  # in a bundle owned by the team "research"
# the environment's credentials and AWS_ENDPOINT_URL (set by ``s3_endpoint``), as the view's connections use
store = ArtifactStore()


@pytest.fixture(scope="module")
def s3_endpoint(s3_server):
    """The session's moto S3 server (real HTTP), made what boto3's default client talks to."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": s3_server.endpoint}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        import boto3

        boto3.client("s3").create_bucket(Bucket="cv-bucket")
        yield "s3://cv-bucket/root"


@pytest.fixture(scope="module")
def api(airflow_db, tmp_path_factory, s3_endpoint):
    """The api-server's FastAPI app with the cvtune plugin, two connections and a token."""
    from fastapi.testclient import TestClient

    base = tmp_path_factory.mktemp("view")
    local_root = str(base / "artifacts")
    passwords = base / "passwords.json"
    passwords.write_text(json.dumps({"admin": PASSWORD, "researcher": PASSWORD}))
    env = {
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        # both viewers; only "researcher" is in the team that owns TEAM_DAG
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:viewer,researcher:viewer:research",
        "AIRFLOW__CORE__MULTI_TEAM": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API_AUTH__JWT_SECRET": "a-test-jwt-secret-" + "x" * 64,  # HS512 wants >= 64 bytes (RFC 7518 3.2)
        "AIRFLOW_CONN_CVTUNE_DEFAULT": json.dumps({"conn_type": "cvtune", "extra": {"artifact_root": local_root}}),
        "AIRFLOW_CONN_CVTUNE_S3": json.dumps({"conn_type": "cvtune", "extra": {"artifact_root": s3_endpoint}}),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        from airflow.api_fastapi.app import create_app, purge_cached_app

        team_owned_dag(TEAM_DAG, "research")
        purge_cached_app()
        with TestClient(create_app("all")) as client:
            tokens = {user: client.post("/auth/token", json={"username": user, "password": PASSWORD}).json()["access_token"]
                      for user in ("admin", "researcher")}
            yield {"client": client, "token": tokens["admin"], "tokens": tokens, "local": local_root, "s3": s3_endpoint,
                   "tmp": base}
        purge_cached_app()


def team_owned_dag(dag_id: str, team: str) -> None:
    """A DAG in the metadata DB whose bundle belongs to ``team``, as a multi-team deployment has it."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    with create_session() as session:
        if session.get(DagModel, dag_id) is not None:
            return
        bundle = DagBundleModel(name=f"{team}-bundle")
        bundle.teams.append(session.get(Team, team) or Team(name=team))
        session.add(bundle)
        session.flush()
        session.add(DagModel(dag_id=dag_id, bundle_name=bundle.name, fileloc=f"/dags/{dag_id}.py", max_active_tasks=1,
                             max_consecutive_failed_dag_runs=0, has_task_concurrency_limits=False))


def publish(tmp, root: str, run_id: str, dag_id: str | None = "cv_tuning_pipeline") -> dict:
    """A finished tuning run and a pipeline report under ``root`` (local or s3://), owned by ``dag_id``
    (``None``: a run from the CLI, outside any DAG)."""
    ledger = make_ledger(tmp, run_id, [(TrialState.COMPLETED, params(0), [0.91, 0.92, 0.93]),
                                       (TrialState.COMPLETED, params(2), [0.95, 0.96, 0.97])])
    ledger.uri, ledger.token = store.join(root, "runs", run_id, "ledger.json"), None  # a new ledger there
    if dag_id is not None:
        ledger.data["airflow"] = {"dag_id": dag_id, "run_id": "manual__1"}
    ledger.save()
    summary = report.build_summary(ledgers=[ledger], best={}, final_model=None, registration=None, predictions=None,
                                   stage_seconds={"tune": 3.0},
                                   extra={"dag_id": dag_id, "dag_run_id": "manual__1"} if dag_id else {})
    folder = f"{dag_id or 'cli'}/manual__1-{run_id}"
    report.write_report(store.join(root, "reports", folder), summary, [ledger])
    return {"ledger": ledger, "folder": folder}


def get(api, path: str, user: str = "admin", **headers):
    return api["client"].get(path, headers={"Authorization": f"Bearer {api['tokens'][user]}", **headers})


@pytest.mark.parametrize("where", ["local", "s3"])
def test_lists_runs_and_serves_reports_summaries_ledgers(api, where):
    run_id = f"tune-{where}-1"
    published = publish(api["tmp"] / where, api[where], run_id)
    q = "" if where == "local" else "?conn=cvtune_s3"

    listing = get(api, f"/cvtune/api/runs{q}").json()
    assert listing["artifact_root"] == api[where]
    [run] = [r for r in listing["runs"] if r["run_id"] == run_id]
    assert run["status"] == "Completed" and run["best"]["trial"] == 1 and run["fold_jobs"] == 6
    assert run["report"] == f"/cvtune/runs/{run_id}/report{q}"
    [pipeline] = [r for r in listing["reports"] if r["folder"] == published["folder"]]
    assert pipeline["dag_run_id"] == "manual__1" and abs(pipeline["mean"] - 0.96) < 1e-9

    page = get(api, f"/cvtune/{q}")
    assert page.status_code == 200 and run_id in page.text and published["folder"] in page.text
    own = get(api, run["report"])
    assert own.status_code == 200 and own.headers["content-type"].startswith("text/html")
    assert f"cvtune report — {run_id}" in own.text and "Optimization history" in own.text
    assert get(api, run["ledger"]).json() == published["ledger"].data
    assert get(api, f"/cvtune/runs/{run_id}/summary.json{q}").json()["best"]["trial"] == 1
    served = get(api, pipeline["report"])
    assert served.status_code == 200 and served.text == store.read_text(
        store.join(api[where], "reports", published["folder"], "report.html"))
    assert get(api, pipeline["summary"]).json()["run_ids"] == [run_id]


def test_only_for_authenticated_users_and_nothing_outside_the_root(api):
    client = api["client"]
    assert client.get("/cvtune/api/runs").status_code == 401
    assert client.get("/cvtune/api/runs", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 403
    browser = client.get("/cvtune/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert browser.status_code == 307 and "login" in browser.headers["location"]
    client.cookies.set("_token", api["token"])  # the UI's session cookie works like the header
    try:
        assert client.get("/cvtune/api/runs").status_code == 200
    finally:
        client.cookies.clear()
    for path in ("/cvtune/reports/../runs/x/report.html", "/cvtune/reports/d/%2e%2e/%2e%2e/secret/report.html",
                 "/cvtune/reports/d/..%2F..%2Fx/report.html", "/cvtune/reports/nope/report.html",
                 "/cvtune/runs/..%2Fx/ledger.json", "/cvtune/runs/nope/report"):
        assert get(api, path).status_code == 404, path
    assert get(api, "/cvtune/api/runs?conn=no_such_conn").status_code == 404


def test_a_teams_dag_is_read_only_by_its_team(api):
    """The view asks the auth manager as the REST API does: a run or report of the team's DAG is
    for the team's users only (403 for a viewer outside the team, and absent from their lists);
    other DAGs' and CLI runs (no DAG: readable by who may read every DAG) are for both."""
    names = {TEAM_DAG: "team", "cv_tuning_pipeline": "dag", None: "cli"}
    published = {dag: publish(api["tmp"] / f"auth-{name}", api["local"], f"tune-auth-{name}", dag)
                 for dag, name in names.items()}
    team_run, team_folder = "tune-auth-team", published[TEAM_DAG]["folder"]
    team_paths = [f"/cvtune/runs/{team_run}/report", f"/cvtune/runs/{team_run}/summary.json",
                  f"/cvtune/runs/{team_run}/ledger.json", f"/cvtune/reports/{team_folder}/report.html",
                  f"/cvtune/reports/{team_folder}/summary.json"]
    # the REST API agrees on who may read the team's DAG (past its auth check, the researcher learns
    # the DAG was never parsed: this test only put it in the DB)
    assert get(api, f"/api/v2/dags/{TEAM_DAG}", user="researcher").status_code == 404
    assert get(api, f"/api/v2/dags/{TEAM_DAG}", user="admin").status_code == 403
    for path in team_paths:
        assert get(api, path, user="researcher").status_code == 200, path
        denied = get(api, path, user="admin")
        assert denied.status_code == 403 and TEAM_DAG in denied.json()["detail"], (path, denied.text)

    for user, sees_team in (("researcher", True), ("admin", False)):
        listing = get(api, "/cvtune/api/runs", user=user).json()
        runs = {r["run_id"] for r in listing["runs"]}
        folders = {r["folder"] for r in listing["reports"]}
        assert {"tune-auth-dag", "tune-auth-cli"} <= runs, (user, runs)
        assert {published["cv_tuning_pipeline"]["folder"], published[None]["folder"]} <= folders
        assert (team_run in runs, team_folder in folders) == (sees_team, sees_team), user
        assert (team_run in get(api, "/cvtune/", user=user).text) is sees_team
        for path in ("/cvtune/runs/tune-auth-cli/ledger.json", f"/cvtune/reports/{published[None]['folder']}/report.html"):
            assert get(api, path, user=user).status_code == 200, (user, path)


def test_plugin_is_registered_by_the_provider(api):
    plugins = get(api, "/api/v2/plugins").json()["plugins"]
    [cvtune] = [p for p in plugins if p["name"] == "cvtune"]
    assert cvtune["fastapi_apps"][0]["url_prefix"] == "/cvtune"
    assert cvtune["external_views"][0]["href"] == "/cvtune/"
    assert os.path.basename(cvtune["source"] or "") in ("", "airflow-provider-cvtune") or "cvtune" in cvtune["source"]
