"""The cvtune view on the real api-server app (Airflow's create_app, simple auth manager): runs,
reports, ledgers and summaries from a local and an s3:// root, for authenticated users only."""

from __future__ import annotations

import json
import os

import pytest

from cvtune import report
from cvtune.ledger import COMPLETED
from cvtune.store import ArtifactStore
from tests.test_report import make_ledger, params

PASSWORD = "s3cret-pw"
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
    passwords.write_text(json.dumps({"admin": PASSWORD}))
    env = {
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API_AUTH__JWT_SECRET": "a-test-jwt-secret-of-32-characters!",
        "AIRFLOW_CONN_CVTUNE_DEFAULT": json.dumps({"conn_type": "cvtune", "extra": {"artifact_root": local_root}}),
        "AIRFLOW_CONN_CVTUNE_S3": json.dumps({"conn_type": "cvtune", "extra": {"artifact_root": s3_endpoint}}),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        from airflow.api_fastapi.app import create_app, purge_cached_app

        purge_cached_app()
        with TestClient(create_app("all")) as client:
            token = client.post("/auth/token", json={"username": "admin", "password": PASSWORD}).json()["access_token"]
            yield {"client": client, "token": token, "local": local_root, "s3": s3_endpoint,
                   "tmp": base}
        purge_cached_app()


def publish(tmp, root: str, run_id: str) -> dict:
    """A finished tuning run and a pipeline report under ``root`` (local or s3://)."""
    ledger = make_ledger(tmp, run_id, [(COMPLETED, params(0), [0.91, 0.92, 0.93]),
                                       (COMPLETED, params(2), [0.95, 0.96, 0.97])])
    ledger.uri, ledger.token = store.join(root, "runs", run_id, "ledger.json"), None  # a new ledger there
    ledger.data["airflow"] = {"dag_id": "cv_tuning_pipeline", "run_id": "manual__1"}
    ledger.save()
    summary = report.build_summary(ledgers=[ledger], best={}, final_model=None, registration=None, predictions=None,
                                   stage_seconds={"tune": 3.0}, extra={"dag_id": "cv_tuning_pipeline",
                                                                       "dag_run_id": "manual__1"})
    folder = f"cv_tuning_pipeline/manual__1-{run_id}"
    report.write_report(store.join(root, "reports", folder), summary, [ledger])
    return {"ledger": ledger, "folder": folder}


def get(api, path: str, **headers):
    return api["client"].get(path, headers={"Authorization": f"Bearer {api['token']}", **headers})


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


def test_plugin_is_registered_by_the_provider(api):
    plugins = get(api, "/api/v2/plugins").json()["plugins"]
    [cvtune] = [p for p in plugins if p["name"] == "cvtune"]
    assert cvtune["fastapi_apps"][0]["url_prefix"] == "/cvtune"
    assert cvtune["external_views"][0]["href"] == "/cvtune/"
    assert os.path.basename(cvtune["source"] or "") in ("", "airflow-provider-cvtune") or "cvtune" in cvtune["source"]
