"""Both Dagster instance files load, with run retries (crashes only) and run monitoring on."""

import shutil

import dagster as dg
import pytest

from image_pipeline import definitions
from tests.support.paths import ROOT
from tests.support.services import create_pg_database, drop_pg_database

defs = definitions.defs()  # what the code location loads: the defs folder, the dg way


@pytest.mark.parametrize("config", ["dagster.yaml", "deploy/embedded/dagster.yaml"])
def test_instance_retries_crashed_runs(config: str, tmp_path, monkeypatch) -> None:
    dagster_pg = create_pg_database("imgpipe_instance")
    monkeypatch.setenv("IMGPIPE_DAGSTER_PG_URL", dagster_pg)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    shutil.copyfile(ROOT / config, tmp_path / "dagster.yaml")
    try:
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1
            assert not instance.run_retries_retry_on_asset_or_op_failure
            assert instance.run_monitoring_enabled and instance.run_monitoring_poll_interval_seconds <= 10
    finally:
        drop_pg_database(dagster_pg)


def test_webhook_retry_sensor_is_on_by_default() -> None:
    sensor = defs.resolve_sensor_def("webhook_retry_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds <= 5
