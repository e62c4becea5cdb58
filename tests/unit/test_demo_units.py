"""Pure parts of the demo services: weighting, fault injection, log rotation, input and state checks."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from migration_waves.canary import load_payloads
from migration_waves.demo.inference import ErrorInjector, RotatingJsonlLog, _validate_pixels
from migration_waves.demo.router import WeightedChooser, load_state, save_state

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("pct", [0, 1, 5, 33, 50, 99, 100])
def test_weighted_chooser_is_exact_per_hundred(pct: int) -> None:
    chooser = WeightedChooser(pct)
    picks = [chooser.pick() for _ in range(300)]
    for window in range(0, 300, 100):
        assert picks[window : window + 100].count("candidate") == pct


def test_weighted_chooser_spreads_the_candidate() -> None:
    picks = [WeightedChooser(5).pick() for _ in range(1)]  # fresh chooser: first pick is the baseline
    assert picks == ["baseline"]
    chooser = WeightedChooser(5)
    idx = [i for i in range(100) if chooser.pick() == "candidate"]
    assert len(idx) == 5 and min(b - a for a, b in itertools.pairwise(idx)) >= 15


@pytest.mark.parametrize("bad", [-1, 101, 5.5, "10", True, None])
def test_weighted_chooser_rejects_bad_weights(bad: object) -> None:
    with pytest.raises(ValueError, match="candidate weight"):
        WeightedChooser().set(bad)  # type: ignore[arg-type]


def test_error_injector_fails_the_exact_fraction() -> None:
    inj = ErrorInjector(0.2)
    assert sum(inj.should_fail() for _ in range(100)) == 20
    assert not any(ErrorInjector(0.0).should_fail() for _ in range(50))


def test_rotating_log_closes_full_files(tmp_path: Path) -> None:
    log = RotatingJsonlLog(tmp_path, "serving-onprem", rotate_lines=3)
    for i in range(7):
        log.write({"i": i})
    log.close()
    files = sorted(tmp_path.glob("serving-onprem-*.jsonl"))
    assert [len(f.read_text().splitlines()) for f in files] == [3, 3, 1]
    assert [json.loads(line)["i"] for f in files for line in f.read_text().splitlines()] == list(range(7))


def test_validate_pixels_messages() -> None:
    assert _validate_pixels({"pixels": [0.0] * 64}) == [0.0] * 64
    assert "got 3" in str(_validate_pixels({"pixels": [1, 2, 3]}))
    assert "pixels[2]" in str(_validate_pixels({"pixels": [0, 0, "x"] + [0] * 61}))
    assert "pixels[0]" in str(_validate_pixels({"pixels": [float("nan")] + [0] * 63}))
    assert "JSON object" in str(_validate_pixels([1, 2]))


def test_router_state_round_trip_and_bad_file(tmp_path: Path) -> None:
    state = tmp_path / "s" / "weights.json"
    assert load_state(state) == 0
    save_state(state, 25)
    assert load_state(state) == 25
    state.write_text('{"candidate": 250}')
    with pytest.raises(ValueError, match=r"weights.json.*delete it"):
        load_state(state)


def test_load_payloads_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        load_payloads(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="holds no payloads"):
        load_payloads(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"pixels": []}\n{oops\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        load_payloads(bad)
    good = tmp_path / "good.jsonl"
    good.write_text('{"pixels": [1]}\n\n{"pixels": [2]}\n')
    assert load_payloads(good) == [{"pixels": [1]}, {"pixels": [2]}]
