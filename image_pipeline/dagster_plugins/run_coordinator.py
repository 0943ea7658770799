"""Dagster's queued run coordinator, with a dequeue interval below one second.

Every run waits in Dagster's run queue until the daemon's next look at it; that is what makes the run
limits in dagster.yaml (`concurrency.runs`) hold. Dagster accepts only whole seconds for the interval
(minimum 1), so a small request's run waited half a second on average before it even started, the
largest share of upload -> webhook on `make up` (docs/performance.md). The daemon's loop sleeps in
0.5 s steps, so 0.5 is the useful floor; each look is one indexed query of the run table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Field, QueuedRunCoordinator
from dagster._serdes import ConfigurableClassData

DEFAULT_INTERVAL_S = 0.5


class QuickQueuedRunCoordinator(QueuedRunCoordinator):
    """Same queue, limits and config as `QueuedRunCoordinator`; `dequeue_interval_seconds` may be a float."""

    def __init__(self, *, dequeue_interval_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._interval_s = float(dequeue_interval_seconds or DEFAULT_INTERVAL_S)

    @property
    def dequeue_interval_seconds(self) -> float:  # type: ignore[override]  (Dagster's is an int)
        return self._interval_s

    @classmethod
    def config_type(cls):
        schema = dict(super().config_type())
        schema["dequeue_interval_seconds"] = Field(
            float,
            is_required=False,
            default_value=DEFAULT_INTERVAL_S,
            description="Seconds between the daemon's looks at the run queue (may be below 1).",
        )
        return schema

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        config = dict(config_value)
        interval = config.pop("dequeue_interval_seconds", None)
        coordinator = super().from_config_value(inst_data, config)
        coordinator._interval_s = float(interval or DEFAULT_INTERVAL_S)
        return coordinator
