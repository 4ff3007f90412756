"""The demo command end to end (without serving the UI): it starts its own
servers, loads data, records every partition as materialized in the Dagster
instance, and leaves nothing running."""

import json
import os
import shutil
import subprocess
import sys

import psutil

from dashboard_assets_tests.conftest import PROJECT_ROOT


def _processes_under(folder: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if folder in command:
            found.append(command)
    return found


def test_demo_backfills_everything_in_one_run_and_stops_its_servers():
    state_dir = PROJECT_ROOT / ".local" / f"test-demo-{os.getpid()}"
    shutil.rmtree(state_dir, ignore_errors=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DASHBOARD_", "DAGSTER_"))
    } | {"DASHBOARD_DEMO_DIR": str(state_dir)}
    check = (
        "import dagster as dg, json;"
        "i = dg.DagsterInstance.get();"
        "keys = ['daily_metrics', 'daily_pipeline', 'daily_warranty', 'daily_jobs'];"
        "print(json.dumps({k: len(i.get_materialized_partitions(dg.AssetKey(k))) for k in keys}"
        " | {'runs': len(i.get_run_records()),"
        " 'maintained': i.get_latest_materialization_event(dg.AssetKey('table_maintenance')) is not None}))"
    )
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "dashboard_assets.cli", "demo", "--no-ui", "--orgs", "2", "--days", "20"],
            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
        )
        assert demo.returncode == 0, demo.stderr[-3000:]
        assert "backfill  every partition materialized" in demo.stdout
        console = demo.stdout.splitlines()
        assert len(console) <= 20 and all(line.split()[0] in ("log", "servers", "schema", "data", "backfill")
                                          for line in console), console  # a line per stage, no event stream
        assert "STEP_SUCCESS" in (state_dir / "demo.log").read_text()  # Dagster's events, in the log it names
        assert _processes_under(str(state_dir)) == []  # both servers stopped
        # Start again, read what the instance recorded, stop again.
        inspect = subprocess.run(
            [sys.executable, "-c", _with_demo_servers(check)],
            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
        )
        assert inspect.returncode == 0, inspect.stderr[-3000:]
        recorded = json.loads(inspect.stdout.strip().splitlines()[-1])
        # one ranged run for every daily partition, one for the snapshot, one for
        # the charts, analytics, cache warming, health and table maintenance, one ranged run for every week
        assert recorded["runs"] == 4
        assert recorded["maintained"]
        for key in ["daily_metrics", "daily_pipeline", "daily_warranty", "daily_jobs"]:
            assert recorded[key] == 20  # --days 20
        assert _processes_under(str(state_dir)) == []
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def _with_demo_servers(code: str) -> str:
    """Python that starts the demo's servers and Dagster home, runs `code`, stops."""
    return (
        "import contextlib;"
        "from dashboard_assets import demo;"
        "stack = contextlib.ExitStack();"
        "demo._start_servers(stack); demo._prepare_dagster_home();"
        f"exec({code!r});"
        "stack.close()"
    )
