"""`dashboard-assets`: the operator's command line."""

import argparse
import datetime as dt
import json
import os
import sys

import psycopg

from dashboard_assets import settings
from dashboard_assets.automation.capture import CaptureError


class _Parser(argparse.ArgumentParser):
    """Bad arguments in one line naming the fix (argparse prints its usage
    first), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} → see `{self.prog} --help`\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="dashboard-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    migrate_cmd = commands.add_parser("migrate", help="apply the project's schema objects (idempotent)")
    migrate_cmd.add_argument("--with-source-schema", action="store_true", help="also create the source tables")
    migrate_cmd.add_argument("--runtime-role", help="the role that runs the pipeline: it owns the dashboard schema "
                                                    "and reads the source tables (docs/deploy.md)")

    generate_cmd = commands.add_parser("generate", help="load deterministic synthetic source data")
    generate_cmd.add_argument("--orgs", type=_positive_int, required=True)
    generate_cmd.add_argument("--days", type=_positive_int, required=True)
    generate_cmd.add_argument("--seed", type=int, default=42)
    generate_cmd.add_argument("--scale", type=float, default=1.0, help="multiplies the per-day volumes")
    generate_cmd.add_argument("--end-date", type=dt.date.fromisoformat, help="last day of history (default today)")

    metrics_cmd = commands.add_parser("metrics", help="full dashboard metrics for an organization and range (JSON)")
    metrics_cmd.add_argument("--org", required=True, help="organization id (canonical lower-case uuid)")
    metrics_cmd.add_argument("--from", dest="date_from", required=True, help="first day, YYYY-MM-DD")
    metrics_cmd.add_argument("--to", dest="date_to", required=True, help="last day, YYYY-MM-DD")

    serve_cmd = commands.add_parser("serve-metrics", help="serve the pipeline's metrics for Prometheus at "
                                                          "http://HOST:PORT/metrics until stopped")
    serve_cmd.add_argument("--port", type=_positive_int, default=9464)
    serve_cmd.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every interface)")

    commands.add_parser("check", help="whether this environment is ready: one line per finding with its fix; "
                                      "exit 0 ready, 1 warnings only, 2 a blocker")

    demo_cmd = commands.add_parser("demo", help="the whole local demo: servers, data, backfill, Dagster UI")
    demo_cmd.add_argument("--orgs", type=_positive_int, default=5)
    demo_cmd.add_argument("--days", type=_positive_int, default=730)
    demo_cmd.add_argument("--seed", type=int, default=42)
    demo_cmd.add_argument("--port", type=int, default=3000)
    demo_cmd.add_argument("--no-ui", action="store_true", help="stop after the backfill instead of serving the UI")

    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (settings.SettingsError, CaptureError, psycopg.Error, ValueError, LookupError) as error:
        print(f"dashboard-assets {args.command}: {operator_message(error)}", file=sys.stderr)
        return 2


def operator_message(error: Exception) -> str:
    """One line naming the cause of an operator's mistake and its fix."""
    from dashboard_assets.readiness import one_line

    text = one_line(error)
    if isinstance(error, psycopg.OperationalError) and "connection" in text:
        return (f"{text} → check {settings.DATABASE_URL} (host, port, user, password, database) and that the "
                "server accepts it; `dashboard-assets check` tells more")
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return f"{text} → the role lacks a right: `dashboard-assets check` names it, docs/deploy.md gives the GRANTs"
    return text


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from dashboard_assets.demo import run_demo

        return run_demo(orgs=args.orgs, days=args.days, seed=args.seed, port=args.port, serve_ui=not args.no_ui)

    if args.command == "check":
        from dashboard_assets import readiness

        findings = readiness.check()
        for finding in findings:
            print(finding.line())
        return readiness.exit_status(findings)

    database_url = _required_env(settings.DATABASE_URL)
    if args.command == "migrate":
        from dashboard_assets.migrations import migrate

        migrate(database_url, with_source_schema=args.with_source_schema, runtime_role=args.runtime_role)
        print(json.dumps({"migrated": True, "with_source_schema": args.with_source_schema,
                          "runtime_role": args.runtime_role}))
    elif args.command == "metrics":
        from dashboard_assets import serving

        dashboard_cache = _reachable_cache()
        value = serving.dashboard_metrics(
            args.org, args.date_from, args.date_to, database_url=database_url, dashboard_cache=dashboard_cache
        )
        print(json.dumps(value, indent=2))
    elif args.command == "serve-metrics":
        from dashboard_assets.prometheus import serve

        serve(database_url, _reachable_cache(), args.host, args.port)
    elif args.command == "generate":
        from dashboard_assets.db import libpq_url
        from dashboard_assets.generate import generate

        with psycopg.connect(libpq_url(database_url)) as conn:
            rows = generate(
                conn, orgs=args.orgs, days=args.days, seed=args.seed, end_date=args.end_date, scale=args.scale
            )
        print(json.dumps(rows))
    return 0


def _reachable_cache():
    """The cache of DASHBOARD_REDIS_URL, or None (the read goes to PostgreSQL)
    when the variable is unset or, for a Redis Cluster, whose client connects
    as soon as it is made, when no node can be reached."""
    from dashboard_assets import cache
    from dashboard_assets.resources import RedisResource

    redis_url = os.environ.get(settings.REDIS_URL)
    if not redis_url:
        return None
    prefix = os.environ.get(settings.REDIS_PREFIX) or settings.DEFAULT_REDIS_PREFIX
    try:
        return RedisResource(url=redis_url, prefix=prefix).cache()
    except cache.UNAVAILABLE as error:
        print(f"dashboard-assets metrics: Redis unavailable, reading from PostgreSQL: {error}", file=sys.stderr)
        return None


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise settings.SettingsError(f"{name} is not set (postgresql://user:password@host:port/database)")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return int(text)


if __name__ == "__main__":
    sys.exit(main())
