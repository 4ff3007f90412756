"""The instance configurations shipped with the project are valid Dagster
instance configuration."""


import pytest
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

from dashboard_assets_tests.conftest import PROJECT_ROOT


@pytest.mark.parametrize("folder", [".", "deploy"])
def test_instance_configuration_is_valid(folder):
    config, _ = dagster_instance_config(str(PROJECT_ROOT / folder), "dagster.yaml")
    assert config["storage"] and config["concurrency"]["pools"]["default_limit"] == 2
    assert config["run_retries"]["enabled"] is True


def test_a_broken_configuration_is_refused(tmp_path):
    text = (PROJECT_ROOT / "deploy" / "dagster.yaml").read_text().replace("max_concurrent_runs", "max_concurent_runs")
    (tmp_path / "dagster.yaml").write_text(text)
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path), "dagster.yaml")
