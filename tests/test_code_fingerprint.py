"""The ledger's code fingerprint covers the whole folder SageMaker ships with the entry point,
walked exactly as the sourcedir.tar.gz is; what the run itself writes there does not count."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from cvtune.errors import ConfigError
from cvtune.ledger import RunLedger
from cvtune.sagemaker.staging import pack_sourcedir
from cvtune.sourcedir import code_sha256, source_files
from cvtune.store import ArtifactStore
from tests.fakes import DiskBackend, ScriptedBackend
from tests.test_tuner import make_config, score, tuner


def test_the_fingerprint_hashes_what_the_tarball_holds(tmp_path):
    (tmp_path / "train.py").write_text("import helper\n")
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("Y = 2\n")
    for skipped in ("__pycache__/helper.cpython-311.pyc", ".git/HEAD", ".venv/bin/python", "pkg/mod.pyc", ".env"):
        (tmp_path / skipped).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / skipped).write_text("not code")
    data, _ = pack_sourcedir(str(tmp_path))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        shipped = sorted(tar.getnames())
    assert shipped == [name for name, _ in source_files(str(tmp_path))] == ["helper.py", "pkg/mod.py", "train.py"]

    before = code_sha256(str(tmp_path / "train.py"))
    (tmp_path / "pkg" / "mod.py").write_text("Y = 3\n")
    assert code_sha256(str(tmp_path / "train.py")) != before
    assert code_sha256("s3://bucket/train.py") is None


def test_a_changed_helper_module_refuses_the_resume(tmp_path):
    """The artifact root, a backend's job folder and caches inside the entry point's folder do not
    change the fingerprint; a helper next to the entry point does, and the resume is refused
    as a changed entry point is."""
    (tmp_path / "helper.py").write_text("WEIGHT = 1\n")
    config = make_config(tmp_path, max_trials=2)  # tmp_path/train.py; the artifact root is tmp_path/art
    backend = DiskBackend(str(tmp_path / "jobs"), score)  # its job folder is inside the code folder too
    summary = tuner(tmp_path, backend, config).run()
    ledger = RunLedger.load(summary["ledger"])
    recorded = ledger.data["code_sha256"]
    assert recorded == code_sha256(config.entry_point, exclude=[str(tmp_path / "art"), str(tmp_path / "jobs")])

    # what runs write: more artifacts, job folders, bytecode caches
    (tmp_path / "art" / "other-run").mkdir(parents=True)
    (tmp_path / "art" / "other-run" / "ledger.json").write_text("{}")
    (tmp_path / "jobs" / "extra.json").write_text("{}")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "helper.cpython-311.pyc").write_bytes(b"\0")
    resumed = tuner(tmp_path, DiskBackend(str(tmp_path / "jobs"), score), make_config(tmp_path, max_trials=3)).run()
    assert resumed["trials"] == {"Completed": 3}

    (tmp_path / "helper.py").write_text("WEIGHT = 2\n")
    with pytest.raises(ConfigError, match="different training code") as err:
        tuner(tmp_path, DiskBackend(str(tmp_path / "jobs"), score), make_config(tmp_path, max_trials=3))
    assert str(tmp_path) in str(err.value) and "restore the code" in str(err.value)

    config = make_config(tmp_path, max_trials=3)
    (tmp_path / "train.py").write_text("# edited\n")  # the entry point itself: refused as before
    with pytest.raises(ConfigError, match="different tuning config"):
        tuner(tmp_path, DiskBackend(str(tmp_path / "jobs"), score), config)


def test_a_ledger_from_before_the_code_fingerprint_still_resumes(tmp_path):
    (tmp_path / "helper.py").write_text("WEIGHT = 1\n")
    summary = tuner(tmp_path, ScriptedBackend(score), make_config(tmp_path, max_trials=2)).run()
    store = ArtifactStore()
    data = json.loads(store.read_bytes(summary["ledger"]))
    del data["code_sha256"]  # as written by an older cvtune
    data.pop("journal", None)
    store.write_bytes(summary["ledger"], json.dumps(data).encode())
    (tmp_path / "helper.py").write_text("WEIGHT = 2\n")  # nothing recorded to compare with
    resumed = tuner(tmp_path, ScriptedBackend(score), make_config(tmp_path, max_trials=3)).run()
    assert resumed["trials"] == {"Completed": 3}
    # the resume records the code it runs, so the next resume checks it
    assert RunLedger.load(summary["ledger"]).data["code_sha256"] == code_sha256(str(tmp_path / "train.py"),
                                                                                exclude=[str(tmp_path / "art")])
    (tmp_path / "helper.py").write_text("WEIGHT = 3\n")
    with pytest.raises(ConfigError, match="different training code"):
        tuner(tmp_path, ScriptedBackend(score), make_config(tmp_path, max_trials=3))
