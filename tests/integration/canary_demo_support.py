"""Shared by the demo-service and canary integration tests: a tiny real model, payloads, free ports."""

from __future__ import annotations

import socket
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from migration_waves.demo.inference import save_model
from migration_waves.demo.services import DemoServices, start_demo_services, stop_demo_services


def train_tiny_model(model_dir: Path) -> tuple[Any, list[dict[str, Any]]]:
    """Fit a small LogisticRegression on sklearn's digits, save it in the service's npz format.

    Returns the fitted model (to check the service's answers against) and 60 payloads.
    """
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few iterations are enough for a demo
        model = LogisticRegression(max_iter=60).fit(digits.data[:600], digits.target[:600])
    save_model(model_dir, model.coef_, model.intercept_, model.classes_, version="test-1")
    payloads = [{"pixels": [float(v) for v in row]} for row in digits.data[600:660]]
    return model, payloads


def free_ports(n: int) -> tuple[int, ...]:
    """n distinct free loopback ports (bound together so they differ, then released)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return tuple(s.getsockname()[1] for s in socks)


@contextmanager
def running_services(root: Path, model_dir: Path, **kwargs: Any) -> Iterator[DemoServices]:
    """Start the three demo services under root; always stop them, even when the start fails."""
    run_dir = root / "run"
    try:
        yield start_demo_services(
            model_dir=model_dir,
            log_dir=root / "logs",
            state_dir=root / "state",
            run_dir=run_dir,
            ports=kwargs.pop("ports", None) or free_ports(3),
            **kwargs,
        )
    finally:
        stop_demo_services(run_dir)
