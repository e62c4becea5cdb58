"""Operators against real files: one small wave, each operator's execute() as a worker runs it.

No scheduler here (the e2e tests cover that): the context holds what these operators read.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from spec_support import wave_spec, write_spec

pytestmark = pytest.mark.integration


@pytest.fixture
def small_wave(tmp_path: Path, project_root: Path) -> Path:
    """A wave with one immutable and one mutable dataset on local folders."""
    src = tmp_path / "onprem"
    (src / "corpus" / "shards").mkdir(parents=True)
    for i in range(5):
        (src / "corpus" / "shards" / f"part {i} #{i}.bin").write_bytes(bytes([i]) * (1000 + i))
    (src / "features").mkdir()
    for i in range(3):
        (src / "features" / f"f{i}.csv").write_text(f"id,value\n{i},{i * 10}\n")
    spec = wave_spec(
        project_root,
        "small",
        state=tmp_path / "state",
        sites={
            "onprem": {"kind": "onprem", "storage": str(src)},
            "cloud": {"kind": "cloud", "storage": str(tmp_path / "cloud")},
        },
        datasets=[
            {"name": "corpus", "class": "immutable", "source": "onprem:corpus/", "target": "cloud:corpus/"},
            {"name": "features", "class": "mutable", "source": "onprem:features/",
             "target": "cloud:features/", "delete": True, "max_delete": 1},
        ],
    )  # fmt: skip
    path = write_spec(tmp_path / "small.yaml", spec)
    return path


def _context(run_id: str = "manual__2026-12-03T10:00:00+00:00", **params: Any) -> dict[str, Any]:
    return {"run_id": run_id, "dag": SimpleNamespace(dag_id="wave_small"), "params": params}


def _run(op_cls: Any, spec: Path, subject: str | None = None, context: dict[str, Any] | None = None,
         **kwargs: Any) -> dict[str, Any]:  # fmt: skip
    op = op_cls(task_id=f"t-{op_cls.__name__}", wave_spec=str(spec), subject=subject, **kwargs)
    return op.execute(context or _context())


def test_seed_verify_then_resume_and_detect_a_flipped_byte(small_wave: Path) -> None:
    from migration_waves.airflow import operators as ops

    snap = _run(ops.SnapshotManifestOperator, small_wave, "corpus")
    assert snap["passed"] and Path(snap["evidence"]).exists()
    seed = _run(ops.CopyDatasetOperator, small_wave, "corpus")
    assert seed["files_copied"] == 5
    verify = _run(ops.VerifyDatasetOperator, small_wave, "corpus")
    assert verify["passed"] and verify["files_verified"] == 5

    again = _run(ops.CopyDatasetOperator, small_wave, "corpus")  # a retry resumes, sends nothing
    assert again["files_copied"] == 0 and again["files_skipped"] == 5

    target = small_wave.parent / "cloud" / "corpus" / "shards" / "part 3 #3.bin"
    data = bytearray(target.read_bytes())
    data[10] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ops.WaveGateFailed) as err:
        _run(ops.VerifyDatasetOperator, small_wave, "corpus")
    message = str(err.value)
    assert "wave small" in message and "dataset corpus" in message and "part 3 #3.bin" in message
    assert "the next run's copy re-sends these 1 file(s)" in message

    # The re-run repairs exactly that file, then verifies clean.
    repair = _run(ops.CopyDatasetOperator, small_wave, "corpus")
    assert repair["files_copied"] == 1 and repair["files_skipped"] == 4
    assert target.read_bytes()[10] == 3
    assert _run(ops.VerifyDatasetOperator, small_wave, "corpus")["passed"]
    assert _run(ops.CopyDatasetOperator, small_wave, "corpus")["files_copied"] == 0


def test_sync_copies_changes_and_caps_deletions(small_wave: Path) -> None:
    from migration_waves.airflow import operators as ops

    for op in (ops.SnapshotManifestOperator, ops.CopyDatasetOperator, ops.VerifyDatasetOperator):
        _run(op, small_wave, "features")
    src = small_wave.parent / "onprem" / "features"
    time.sleep(0.01)
    (src / "f1.csv").write_text("id,value\n1,999\n")
    sync = _run(ops.CopyDatasetOperator, small_wave, "features", mode="sync")
    assert sync["files_copied"] == 1 and sync["files_skipped"] == 2
    assert (small_wave.parent / "cloud" / "features" / "f1.csv").read_text().endswith("999\n")
    assert _run(ops.VerifyDatasetOperator, small_wave, "features", mode="sync")["passed"]

    (src / "f0.csv").unlink()
    (src / "f2.csv").unlink()
    with pytest.raises(Exception, match=r"features.*(delete|max_delete)"):
        _run(ops.CopyDatasetOperator, small_wave, "features", mode="sync")
    assert (small_wave.parent / "cloud" / "features" / "f0.csv").exists()  # nothing deleted


def test_missing_source_is_named_in_the_plan(small_wave: Path) -> None:
    from migration_waves.airflow import operators as ops

    spec = yaml.safe_load(small_wave.read_text())
    spec["datasets"][0]["source"] = "onprem:no-such-folder/"
    small_wave.write_text(yaml.safe_dump(spec))
    with pytest.raises(ops.WaveGateFailed) as err:
        _run(ops.PlanOperator, small_wave)
    assert "dataset corpus" in str(err.value) and "no-such-folder" in str(err.value)


def test_egress_budget_gate_blocks_with_numbers(small_wave: Path) -> None:
    from migration_waves.airflow import operators as ops

    spec = yaml.safe_load(small_wave.read_text())
    spec["budget"]["egress_usd"] = 0
    pricing = small_wave.parent / "pricing.yaml"
    pricing.write_text(yaml.safe_dump({
        "currency": "USD",
        "egress": {
            "onprem_to_cloud": {"usd_per_gb": 0.0, "source": "test", "date": "2026-12-01"},
            "onprem_uplink": {"usd_per_gb": 1000.0, "source": "test", "date": "2026-12-01"},
            "cloud_to_onprem": {"usd_per_gb": 0.09, "source": "test", "date": "2026-12-01"},
        },
    }))  # fmt: skip
    spec["budget"]["pricing"] = str(pricing)
    small_wave.write_text(yaml.safe_dump(spec))
    assert _run(ops.PlanOperator, small_wave)["passed"]
    with pytest.raises(ops.WaveGateFailed, match=r"wave small.*exceeds the budget \$0"):
        _run(ops.EgressBudgetOperator, small_wave)


def test_security_checklist_rejects_a_secret_in_the_spec(small_wave: Path) -> None:
    from migration_waves.airflow import operators as ops

    assert _run(ops.SecurityOperator, small_wave)["passed"]
    text = small_wave.read_text() + "# aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    small_wave.write_text(text)
    with pytest.raises(ops.WaveGateFailed, match="looks like a secret"):
        _run(ops.SecurityOperator, small_wave)


def test_dry_run_skips_data_tasks_and_datasets_param_selects(small_wave: Path) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from migration_waves.airflow import operators as ops

    with pytest.raises(AirflowSkipException, match="dry run"):
        _run(ops.CopyDatasetOperator, small_wave, "corpus", context=_context(dry_run=True))
    with pytest.raises(AirflowSkipException, match="not in this run's datasets"):
        _run(ops.CopyDatasetOperator, small_wave, "corpus", context=_context(datasets=["features"]))
    assert not (small_wave.parent / "cloud" / "corpus").exists()
