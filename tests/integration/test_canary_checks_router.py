"""Synthetic checks and the router client against the real demo services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from canary_demo_support import free_ports, running_services, train_tiny_model

from migration_waves.canary import LocalRouter, RouterError, restore_baseline, synthetic_check
from migration_waves.demo.services import DemoServices

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoServices, list[dict[str, Any]]]]:
    root: Path = tmp_path_factory.mktemp("checks")
    _, payloads = train_tiny_model(root / "model")
    with running_services(root, root / "model") as services:
        yield services, payloads


def test_synthetic_check_passes_on_live_endpoints(demo: tuple[DemoServices, list[dict[str, Any]]]) -> None:
    services, payloads = demo
    for url, backend in ((services.baseline_url, "onprem"), (services.candidate_url, "cloud")):
        result = synthetic_check(
            url,
            predict_path="/predict",
            health_path="/health",
            payload=payloads[0],
            workload="digits-classifier",
        )
        assert result.passed, result.reasons
        assert result.backend == backend and result.label is not None and 0 <= result.label <= 9
        assert result.model_dump(mode="json")["passed"] is True


def test_synthetic_check_names_workload_and_url_when_unreachable(
    demo: tuple[DemoServices, list[dict[str, Any]]],
) -> None:
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    result = synthetic_check(
        url, predict_path="/predict", health_path="/health", payload=demo[1][0], workload="digits-classifier"
    )
    assert not result.passed
    assert "digits-classifier" in result.reasons[0] and f"{url}/health" in result.reasons[0]
    assert "unreachable" in result.reasons[0]


def test_synthetic_check_fails_on_a_bad_payload_and_a_wrong_path(
    demo: tuple[DemoServices, list[dict[str, Any]]],
) -> None:
    services = demo[0]
    bad = synthetic_check(
        services.baseline_url,
        predict_path="/predict",
        health_path="/health",
        payload={"pixels": [1]},
        workload="w",
    )
    assert not bad.passed and bad.predict_status == 422 and "answered 422" in bad.reasons[0]
    wrong = synthetic_check(
        services.baseline_url,
        predict_path="/predict",
        health_path="/healthz",
        payload=demo[1][0],
        workload="w",
    )
    assert not wrong.passed and wrong.health_status == 404


def test_restore_baseline_is_idempotent(demo: tuple[DemoServices, list[dict[str, Any]]]) -> None:
    router = LocalRouter(demo[0].router_url)
    assert router.set_candidate_weight(40) == 40
    first = restore_baseline(router)
    assert (first.before_pct, first.after_pct, first.changed, first.passed) == (40, 0, True, True)
    assert "40% -> 0%" in first.reasons[0]
    second = restore_baseline(router)
    assert (second.before_pct, second.after_pct, second.changed, second.passed) == (0, 0, False, True)
    assert "already at 0%" in second.reasons[0]
    assert router.get_candidate_weight() == 0


def test_local_router_refuses_bad_weights(demo: tuple[DemoServices, list[dict[str, Any]]]) -> None:
    router = LocalRouter(demo[0].router_url)
    for bad in (-1, 101, 2.5):
        with pytest.raises(ValueError, match=r"integer 0\.\.100"):
            router.set_candidate_weight(bad)  # type: ignore[arg-type]
    assert router.get_candidate_weight() == 0


def test_local_router_retries_then_reports_the_url() -> None:
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    router = LocalRouter(url, tries=3, backoff_s=0.01)
    with pytest.raises(RouterError, match=r"failed after 3 tries.*ConnectError") as err:
        router.get_candidate_weight()
    assert url in str(err.value)
