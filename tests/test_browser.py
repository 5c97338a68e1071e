"""What a user sees in a real browser: headless Chromium (Debian's package, driven by playwright)
against a real api-server — the login page, the trigger form of cv_tuning_pipeline in its
sections, and the cvtune view with a tuning report.

`make test` installs Chromium when it is missing (Makefile target ``chromium``). Screenshots land
in ``$CVTUNE_SCREENSHOTS`` (default: the test's tmp folder).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from cvtune.states import TrialState
from cvtune.store import ArtifactStore
from tests.conftest import ROOT
from tests.test_report import make_ledger, params

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
USER, PASSWORD = "admin", "browser-pw-1"
SECTIONS = {  # the form's sections and some of their fields' titles
    "Data": ("Data URI", "Partition root", "Folds (K)"),
    "Search": ("Max trials", "Search strategy"),
    "Refinement": ("Refinement trials",),
    "Registry": ("Model package group",),
    "Connection": ("cvtune connection id",),
}
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An api-server on SQLite in a home of its own, the reference DAG serialized, one report published."""
    import requests

    home = tmp_path_factory.mktemp("browser-home")
    dags, artifacts = home / "dags", home / "artifacts"
    dags.mkdir()
    os.symlink(os.path.join(ROOT, "dags", "cv_tuning_pipeline.py"), dags / "cv_tuning_pipeline.py")
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CVTUNE"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW_CONN_CVTUNE_DEFAULT": json.dumps({"conn_type": "cvtune", "extra": {"artifact_root": str(artifacts)}}),
    })
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        subprocess.run([sys.executable, "-m", "airflow", *args], env=env, check=True, capture_output=True, timeout=600)

    ledger = make_ledger(home, "tune-browser-1", [(TrialState.COMPLETED, params(0), [0.91, 0.92, 0.93]),
                                                  (TrialState.COMPLETED, params(2), [0.95, 0.96, 0.97])])
    manifest = str(artifacts / "folds" / "manifest.json")
    ArtifactStore().write_json(manifest, {"manifest_uri": manifest, "dataset": {"uri": "/data/raw/dt=2026-03-04/", "rows": 569,
                                                                      "columns": ["a", "b", "target"]},
                                "split": {"target": "target", "strategy": "stratified"}})
    ledger.data["manifest_uri"] = manifest
    ledger.uri, ledger.token = os.path.join(str(artifacts), "runs", "tune-browser-1", "ledger.json"), None
    ledger.save()

    log = open(home / "api-server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (home / "api-server.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "api-server not up in 180 s"
            time.sleep(1)
        yield {"url": url, "artifacts": str(artifacts), "ledger": ledger}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Chromium missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
        context.close()
        browser.close()


def shot(page, name: str, tmp_path) -> str:
    folder = os.environ.get("CVTUNE_SCREENSHOTS") or str(tmp_path)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    return path


def test_login_then_the_trigger_form_in_sections(server, page, tmp_path):
    page.goto(f"{server['url']}/dags/cv_tuning_pipeline")
    page.get_by_label("Username").fill(USER)  # the simple auth manager's login page
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server['url']}/dags/cv_tuning_pipeline*")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    page.wait_for_timeout(2000)
    shot(page, "trigger-dialog", tmp_path)
    for section, titles in SECTIONS.items():  # an accordion: open each section, see its fields
        dialog.get_by_text(section, exact=True).first.click()
        for title in titles:  # a required field's label ends with "*"
            dialog.get_by_text(re.compile(rf"^{re.escape(title)}\s*\*?$")).first.wait_for()
    page.wait_for_timeout(800)  # let the accordion finish moving before the screenshot
    path = shot(page, "trigger-form", tmp_path)
    submit = dialog.get_by_role("button", name="Trigger")
    assert submit.is_enabled(), f"the Trigger button is disabled with the defaults (see {path})"


def test_the_cvtune_view_and_a_report(server, page, tmp_path):
    page.goto(f"{server['url']}/cvtune/")  # the session cookie of the login above
    page.get_by_role("heading", name="cvtune — tuning runs").wait_for()
    page.get_by_role("link", name="tune-browser-1").click()
    page.wait_for_url("**/cvtune/runs/tune-browser-1/report")
    assert page.title() == "cvtune report — tune-browser-1"
    for heading in ("What was tuned, and why it ended", "Optimization history", "Top trials"):
        assert page.get_by_role("heading", name=heading).first.is_visible(), heading
    card = page.locator(".card").filter(has_text="best CV score")
    assert "0.9600" in card.inner_text()
    story = page.locator("section").filter(has_text="What was tuned").inner_text()
    assert "/data/raw/dt=2026-03-04/" in story and "partition dt=2026-03-04" in story and "569 rows" in story
    assert "why tune-browser-1 stopped" in story and "Completed" in story
    shot(page, "report", tmp_path)
