"""Retrying a step whose server is briefly out of reach."""

import functools
from collections.abc import Callable

import dagster as dg
import psycopg
import redis
import sqlalchemy as sa

from dashboard_assets.replica import SourceBehind

# A dropped connection, a failover, a deadlock, a serialization failure (a
# replica's conflict with recovery among them), or a replica source that has
# not yet replayed what the run must see.
POSTGRES_ERRORS = (psycopg.OperationalError, psycopg.errors.TransactionRollback, sa.exc.OperationalError,
                   SourceBehind)
# Redis refusing connections, restarting (loading its data) or not answering;
# a Redis Cluster none of whose nodes can be reached, or with a slot no node serves.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                redis.exceptions.RedisClusterException)
MAX_RETRIES = 3
FIRST_RETRY_SECONDS = 5


def retried_on(*errors: type[BaseException]) -> Callable[[Callable], Callable]:
    """Decorates an asset's compute function (under `@dg.asset`): one of
    `errors` becomes a retry of the step after 5, 10 and 20 s, logged as a
    warning; any other error, or the fourth failure, fails the step. What the
    step wrote before the error stays, so steps retried this way must be
    idempotent (they replace, never append)."""

    def decorate(compute: Callable) -> Callable:
        @functools.wraps(compute)
        def compute_with_retries(context: dg.AssetExecutionContext, *args, **kwargs):
            try:
                return compute(context, *args, **kwargs)
            except errors as error:
                wait = FIRST_RETRY_SECONDS * 2**context.retry_number
                context.log.warning(
                    f"{type(error).__name__}, retry {context.retry_number + 1} of {MAX_RETRIES} in {wait} s: {error}"
                )
                raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from error

        return compute_with_retries

    return decorate
