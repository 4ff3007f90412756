"""Alerts: a failed run, a failed blocking check, stale partitions and a health
warning, each sent to the webhook once when it starts failing and once when it
recovers.

`alerts_sensor` reads what happened from the instance's event log: run
failures and successes in the order they were stored, and the evaluations of
the watched checks. Its cursor, kept in the instance's storage with each tick's
result, holds how far it has read, the incidents still open and the alerts
not delivered yet. A tick that dies before returning stores nothing, so the
next tick reads the same events again (an alert may then be sent twice, never
lost)."""

import dataclasses
import datetime as dt
import json
from zoneinfo import ZoneInfo

import dagster as dg

from dashboard_assets import settings
from dashboard_assets.automation.freshness import partition_freshness_checks
from dashboard_assets.automation.sensors import RANGE_END, RANGE_START
from dashboard_assets.automation.webhook import WebhookError, post_json
from dashboard_assets.monitoring import dashboard_health
from dashboard_assets.resources import AlertWebhookResource
from dashboard_assets.rollups.assets import current_state_asset, daily_rollup_assets

RUN_FAILED = "Run failed"
BLOCKING_CHECK_FAILED = "Blocking check failed"
STALE_PARTITIONS = "Stale partitions"
HEALTH_WARNING = "Health warning"

# The checks that alert, and what their failure is called.
WATCHED_CHECKS = {
    **{spec.key: BLOCKING_CHECK_FAILED for asset in (*daily_rollup_assets, current_state_asset)
       for spec in asset.check_specs if spec.blocking},
    **{key: STALE_PARTITIONS for check in partition_freshness_checks for key in check.check_keys},
    **{key: HEALTH_WARNING for key in dashboard_health.check_keys},
}

ALERT_INTERVAL_SECONDS = 30
RUN_EVENTS_PER_TICK = 200
CHECK_EVALUATIONS_PER_TICK = 50  # per check
MAX_UNDELIVERED = 100  # the newest are kept while the webhook is down
MAX_DETAIL_CHARS = 500
PARTITION_TAG = "dagster/partition"


@dataclasses.dataclass(frozen=True)
class Alert:
    """One message: an incident started, or recovered."""

    kind: str
    assets: str  # the run's assets, or the checked asset
    check: str  # the check's name, or "" for a run
    partitions: str  # a day, `first…last`, or "" when not partitioned
    run_id: str
    detail: str
    recovered: bool = False

    def text(self, run_link: str) -> str:
        """The one-line form: Slack's notification text, and the log line."""
        return (f"{self.headline()}: {self.subject()} ({self.partitions or 'not partitioned'}), "
                f"run {self.run_id} {run_link}" + (f" — {self.detail}" if self.detail else ""))

    def headline(self) -> str:
        return f"Recovered: {self.kind.lower()}" if self.recovered else self.kind

    def subject(self) -> str:
        return f"{self.check} on {self.assets}" if self.check else self.assets


def slack_body(alert: Alert, run_link: str) -> dict:
    """The webhook's JSON: Slack's `text` and `blocks`."""
    icon = ":large_green_circle:" if alert.recovered else ":red_circle:"
    fields = [("Asset", alert.assets), ("Check", alert.check), ("Partitions", alert.partitions or "not partitioned")]
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": f"{icon} *{alert.headline()}*: {_mrkdwn(alert.subject())}"}},
        {"type": "section", "fields": [
            *({"type": "mrkdwn", "text": f"*{label}*\n{_mrkdwn(value)}"} for label, value in fields if value),
            {"type": "mrkdwn", "text": f"*Run*\n<{run_link}|{alert.run_id}>"},
        ]},
    ]
    if alert.detail:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(alert.detail)}]})
    return {"text": f"{icon} {_mrkdwn(alert.text(run_link))}", "blocks": blocks}


def _mrkdwn(text: str) -> str:
    """Text as Slack shows it literally: its three control characters escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclasses.dataclass(frozen=True)
class Observation:
    """A finished run or a check evaluation: whether `incident` is failing,
    and the alert it raises if that changes its state."""

    incident: str
    failing: bool
    alert: Alert
    timestamp: float


@dataclasses.dataclass
class AlertState:
    """What the sensor keeps between ticks, in its cursor."""

    run_position: int | None = None  # the last run status event read
    check_positions: dict[str, int] = dataclasses.field(default_factory=dict)  # check -> last evaluation read
    open_incidents: dict[str, str] = dataclasses.field(default_factory=dict)  # incident -> since (UTC)
    undelivered: list[Alert] = dataclasses.field(default_factory=list)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "AlertState":
        if not cursor:
            return cls()
        stored = json.loads(cursor)
        return cls(stored["run_position"], stored["check_positions"], stored["open_incidents"],
                   [Alert(**alert) for alert in stored["undelivered"]])

    def to_cursor(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def raised_alerts(observations: list[Observation], open_incidents: dict[str, str]) -> list[Alert]:
    """The alerts of `observations`, in order: an incident's first failure, and
    the first success after it (updates `open_incidents`)."""
    alerts = []
    for seen in observations:
        if seen.failing and seen.incident not in open_incidents:
            open_incidents[seen.incident] = f"{dt.datetime.fromtimestamp(seen.timestamp, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
            alerts.append(seen.alert)
        elif not seen.failing and seen.incident in open_incidents:
            since = open_incidents.pop(seen.incident)
            alerts.append(dataclasses.replace(seen.alert, recovered=True, detail=f"failing since {since}"))
    return alerts


def _partitions(tags: dict[str, str]) -> str:
    start, end = tags.get(RANGE_START), tags.get(RANGE_END)
    if start and end:
        return start if start == end else f"{start}…{end}"
    return tags.get(PARTITION_TAG, "")


def _shortened(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS - 1] + "…"


def newest_run_event(instance: dg.DagsterInstance) -> int:
    """The storage id of the newest run failure or success (0: none yet)."""
    return max((record.storage_id
                for event_type in (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_SUCCESS)
                for record in instance.fetch_run_status_changes(event_type, limit=1).records), default=0)


def run_observations(instance: dg.DagsterInstance, after: int) -> tuple[list[Observation], int]:
    """Runs that failed or succeeded after the event `after`, in storage order,
    and the position reached. A run's incident is its job and its assets: a
    scheduled run, its retries and the next runs of the same assets are one
    incident."""
    batches = [instance.fetch_run_status_changes(dg.RunStatusChangeRecordsFilter(event_type, after_storage_id=after),
                                                 limit=RUN_EVENTS_PER_TICK, ascending=True).records
               for event_type in (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_SUCCESS)]
    # A batch cut at the limit: read the other one only as far, to keep the order.
    cut = min((batch[-1].storage_id for batch in batches if len(batch) == RUN_EVENTS_PER_TICK), default=None)
    records = sorted((record for batch in batches for record in batch if cut is None or record.storage_id <= cut),
                     key=lambda record: record.storage_id)
    observations = []
    for record in records:
        entry = record.event_log_entry
        run = instance.get_run_by_id(entry.run_id)
        if run is None:  # deleted since
            continue
        failing = entry.dagster_event_type == dg.DagsterEventType.RUN_FAILURE
        assets = _run_assets(instance, run)
        alert = Alert(RUN_FAILED, assets, "", _partitions(run.tags), run.run_id,
                      _failure_detail(entry) if failing else "")
        observations.append(Observation(f"run {run.job_name}: {assets}", failing, alert, entry.timestamp))
    return observations, records[-1].storage_id if records else after


def _run_assets(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """The assets a run was to materialize or check, else its job's name."""
    keys = set(instance.event_log_storage.get_asset_keys_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED))
    keys |= {check.asset_key for check in run.asset_check_selection or ()}
    return ", ".join(sorted(key.to_user_string() for key in keys)) or run.job_name


def _failure_detail(entry: dg.EventLogEntry) -> str:
    failure = entry.dagster_event.event_specific_data
    error = failure.error.message.strip() if failure is not None and failure.error else ""
    return _shortened(f"{entry.message} {error}".strip())


def check_observations(instance: dg.DagsterInstance, positions: dict[str, int]) -> list[Observation]:
    """Evaluations of the watched checks after the positions (each check's
    newest only, for a check not seen before), oldest first; moves the
    positions. A check's state is its newest evaluation in the order the
    evaluations were planned: one that finishes after a later-planned one is
    not read."""
    observations = []
    for key, kind in WATCHED_CHECKS.items():
        name = key.to_user_string()
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=CHECK_EVALUATIONS_PER_TICK)
        evaluated = [record for record in reversed(history)
                     if record.event is not None and record.event.asset_check_evaluation is not None
                     and record.id > positions.get(name, 0)]
        if name not in positions:
            evaluated = evaluated[-1:]
        for record in evaluated:
            evaluation = record.event.asset_check_evaluation
            run = instance.get_run_by_id(record.run_id)
            partitions = (_stale_days(record.event.timestamp) if kind == STALE_PARTITIONS
                          else _partitions(run.tags if run else {}))
            detail = _shortened(", ".join(f"{label}: {json.dumps(value.value, default=str)}"
                                          for label, value in evaluation.metadata.items()))
            observations.append(Observation(f"check {name}", not evaluation.passed,
                                            Alert(kind, key.asset_key.to_user_string(), key.name, partitions,
                                                  record.run_id, detail),
                                            record.event.timestamp))
            positions[name] = record.id
    return sorted(observations, key=lambda seen: seen.timestamp)


def _stale_days(timestamp: float) -> str:
    """Yesterday and today in the reporting timezone: what the partition
    freshness checks look at."""
    today = dt.datetime.fromtimestamp(timestamp, ZoneInfo(settings.reporting_timezone())).date()
    return f"{today - dt.timedelta(days=1)}…{today}"


def deliver(alerts: list[Alert], webhook: AlertWebhookResource, log: dg.DagsterLogManager) -> list[Alert]:
    """Send `alerts` in order, or only log them when no webhook is set; returns
    those not delivered (from the first that failed on), for the next tick."""
    for number, alert in enumerate(alerts):
        link = webhook.run_link(alert.run_id)
        if not webhook.url:
            log.warning(f"alert, not sent ({settings.ALERT_WEBHOOK_URL} unset): {alert.text(link)}")
            continue
        try:
            post_json(webhook.url, slack_body(alert, link))
        except WebhookError as error:
            log.warning(f"{len(alerts) - number} alerts not delivered, kept for the next tick: {error}")
            return alerts[number:]
        log.info(f"alert sent: {alert.text(link)}")
    return []


@dg.sensor(
    name="alerts_sensor",
    minimum_interval_seconds=ALERT_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Sends an alert to DASHBOARD_ALERT_WEBHOOK_URL (Slack-compatible JSON; unset: logged only) when a run "
        "fails, a blocking check fails (reconciliation), a rollup's recent partitions are stale or a "
        "dashboard_health check warns: once when the incident starts, once when it recovers. Each names the "
        "asset, the partitions, the run and its link in the UI. A webhook that is down is retried with backoff; "
        "what it did not take is kept and sent at a later tick."
    ),
)
def alerts_sensor(context: dg.SensorEvaluationContext, alert_webhook: AlertWebhookResource) -> dg.SensorResult:
    """Reads the new run outcomes and check evaluations, sends what starts or ends an incident, and stores
    the position, the open incidents and what the webhook did not take in the cursor."""
    state = AlertState.from_cursor(context.cursor)
    if state.run_position is None:  # the first tick: runs from now on, each check's newest evaluation
        state.run_position, runs = newest_run_event(context.instance), []
    else:
        runs, state.run_position = run_observations(context.instance, state.run_position)
    checks = check_observations(context.instance, state.check_positions)
    new = raised_alerts([*runs, *checks], state.open_incidents)
    undelivered = deliver([*state.undelivered, *new], alert_webhook, context.log)
    if len(undelivered) > MAX_UNDELIVERED:
        context.log.warning(f"{len(undelivered) - MAX_UNDELIVERED} oldest undelivered alerts dropped")
    state.undelivered = undelivered[-MAX_UNDELIVERED:]
    return dg.SensorResult(skip_reason=f"{len(new)} new alerts, {len(state.undelivered)} waiting for the webhook",
                           cursor=state.to_cursor())
