"""The Backend contract, run against every backend and test double.

Each clause is what the tuner relies on: names are never reused, an unknown name is
``JobNotFoundError``, a submitted job is described under its name with its tags and ends (its
metrics then in ``final_metrics``), ``wait`` returns only ended jobs, stopping an ended job
changes nothing, the async describe agrees with the sync one, and the backend is a context
manager. The dry-run recorder runs nothing, so only the clauses of a backend that never runs
apply to it (it accepts every submit and knows no job).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cvtune.backends.base import Backend, JobSpec
from cvtune.errors import JobExistsError, JobNotFoundError
from tests.fakes import DiskBackend, ScriptedBackend

METRIC = "validation:score"
DEFINITIONS = [{"Name": METRIC, "Regex": "validation:score=([0-9.]+);"}]


def completes(spec: Any) -> tuple[str, dict, None]:
    return "Completed", {METRIC: 0.9}, None


@dataclass
class Case:
    backend: Backend
    runs_jobs: bool = True  # False: the dry-run recorder


@pytest.fixture
def script(tmp_path) -> str:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('validation:score=0.9;')\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "data.csv").write_text("target,x\n1,0\n")
    return str(code / "train.py")


def _sagemaker(tmp_path: Any) -> Iterator[Backend]:
    from moto import mock_aws

    from cvtune.sagemaker.backend import SageMakerBackend
    from cvtune.sagemaker.config import SageMakerConfig
    from tests.test_sagemaker_backend import BASE, BUCKET, REGION, FakeSageMaker

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        import boto3

        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        fake = FakeSageMaker(lambda name: ("Completed", {METRIC: 0.9}, None))
        yield SageMakerBackend(SageMakerConfig.from_options(BASE), sagemaker_client=fake, s3_client=s3,
                               async_sagemaker_client=_AsyncClient(fake), sleep=lambda s: None)


class _AsyncClient:
    """The Stubber-backed fake as the aiobotocore client a trigger polls with (same answers)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.meta = client.meta

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        async def call(**params: Any) -> Any:
            return method(**params)

        return call


@pytest.fixture(params=["local", "sagemaker-stubbed", "scripted", "disk", "dry-run-recorder"])
def case(request, tmp_path, monkeypatch) -> Iterator[Case]:
    kind = request.param
    if kind == "local":
        from cvtune.local.backend import LocalBackend

        with LocalBackend(str(tmp_path / "jobs"), max_parallel_jobs=1, preload=(), keep_alive_s=5) as backend:
            yield Case(backend)
    elif kind == "sagemaker-stubbed":
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(key, "testing")
        yield from (Case(b) for b in _sagemaker(tmp_path))
    elif kind == "scripted":
        yield Case(ScriptedBackend(completes))
    elif kind == "disk":
        yield Case(DiskBackend(str(tmp_path / "disk"), completes, end_after=1))
    else:
        from cvtune.sagemaker.dryrun import _Recorder

        yield Case(_Recorder(), runs_jobs=False)


def spec(script: str, name: str) -> JobSpec:
    data = os.path.join(os.path.dirname(os.path.dirname(script)), "data")
    return JobSpec(name=name, entry_point=script, hyperparameters={"x": 1}, channels={"train": data},
                   metric_definitions=DEFINITIONS, max_runtime_s=120, tags={"cvtune:run": "contract"})


def wait_until_done(backend: Backend, name: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = backend.wait([name], timeout=2.0)
        assert all(d.done for d in ended) and {d.name for d in ended} <= {name}
        if ended:
            return ended[0]
    pytest.fail(f"{name} did not end within {timeout} s on {backend.name}")


def test_unknown_names_are_job_not_found(case):
    with pytest.raises(JobNotFoundError):
        case.backend.describe("contract-no-such-job")


def test_a_submitted_job_is_described_by_name_and_ends_with_its_metrics(case, script):
    backend = case.backend
    backend.submit(spec(script, "contract-a"))
    if not case.runs_jobs:  # the recorder accepts the request and keeps nothing
        with pytest.raises(JobNotFoundError):
            backend.describe("contract-a")
        return
    first = backend.describe("contract-a")
    assert first.name == "contract-a" and first.status in ("InProgress", "Completed")
    assert backend.owner_tags("contract-a").get("cvtune:run") == "contract"
    ended = wait_until_done(backend, "contract-a")
    assert ended.status == "Completed" and ended.final_metrics[METRIC] == pytest.approx(0.9)
    again = backend.describe("contract-a")
    assert again.status == "Completed" and again.done
    # the async describe (a trigger's poll) agrees
    [async_view] = asyncio.run(backend.adescribe_many(["contract-a"]))
    assert async_view.name == "contract-a" and async_view.status == "Completed"


def test_names_are_never_reused(case, script):
    backend = case.backend
    backend.submit(spec(script, "contract-b"))
    if not case.runs_jobs:
        backend.submit(spec(script, "contract-b"))  # the recorder keeps nothing to collide with
        return
    with pytest.raises(JobExistsError):
        backend.submit(spec(script, "contract-b"))
    wait_until_done(backend, "contract-b")
    with pytest.raises(JobExistsError):  # not even after the job ended
        backend.submit(spec(script, "contract-b"))


def test_stopping_an_ended_job_changes_nothing_and_wait_of_nothing_is_empty(case, script):
    backend = case.backend
    assert backend.wait([], timeout=0.1) == []
    if not case.runs_jobs:
        backend.stop("contract-c")  # nothing to stop, and no error
        return
    backend.submit(spec(script, "contract-c"))
    wait_until_done(backend, "contract-c")
    backend.stop("contract-c")
    assert backend.describe("contract-c").status == "Completed"


def test_the_backend_is_a_context_manager(case):
    with case.backend as entered:
        assert entered is case.backend
