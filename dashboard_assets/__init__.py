"""The dashboard's pipeline: rollups, charts and the Redis cache, as Dagster assets.

Every Dagster process of this project imports this package: the code
location's (run workers, the CLI) and, through the instance storage that
dagster.yaml names, the webserver's and the daemon's. Each of them gets
Dagster's event batching here, unless its environment sets the variables
itself: a ranged run's 2,920 materialization events (730 days × 4 rollups)
are then written a thousand at a time, and its planned events as one
partition subset, instead of one statement each (docs/operations.md).
"""

import os

DAGSTER_BATCHING_ENV = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
}
for _name, _value in DAGSTER_BATCHING_ENV.items():
    os.environ.setdefault(_name, _value)
