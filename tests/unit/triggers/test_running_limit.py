"""The running-time limit is one rule, shared by the deferrable wait (trigger) and the sensor."""

from __future__ import annotations

from airflow_provider_openeo.sensors import openeo as sensor_module
from airflow_provider_openeo.triggers.openeo import over_running_limit, running_limit_at


def test_running_limit_at_counts_from_the_first_running_sighting():
    assert running_limit_at(1000.0, 60.0) == 1060.0
    assert running_limit_at(None, 60.0) is None  # not seen running yet
    assert running_limit_at(1000.0, None) is None  # no limit set
    assert over_running_limit(90) == "running for more than cancel_running_job_after=90 s"


def test_the_sensor_uses_the_triggers_rule():
    assert sensor_module.running_limit_at is running_limit_at
    assert sensor_module.over_running_limit is over_running_limit
