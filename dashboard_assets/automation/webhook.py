"""Posting JSON to an incoming webhook (Slack's, or anything that accepts the
same), retried with exponential backoff on connection errors, timeouts and
server errors. Error messages never include the URL: it is a secret."""

import json
import time
import urllib.error
import urllib.request

ATTEMPTS = 3
FIRST_BACKOFF_SECONDS = 1.0  # then 2 s: at most 3 s of waiting per message
TIMEOUT_SECONDS = 5.0
TOO_MANY_REQUESTS = 429


class WebhookError(Exception):
    """The webhook did not accept the message."""


def post_json(url: str, body: dict, attempts: int = ATTEMPTS, first_backoff: float = FIRST_BACKOFF_SECONDS) -> None:
    """POST `body` as JSON; retries a refused or dropped connection, a timeout,
    429 and 5xx up to `attempts` times in all, and raises WebhookError once
    they are spent, or at once on any other HTTP error (a wrong URL or token)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS):
                return
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code != TOO_MANY_REQUESTS:
                raise WebhookError(f"the webhook refused the message: HTTP {error.code}") from None
            reason = f"HTTP {error.code}"
        except urllib.error.URLError as error:
            reason = str(error.reason)
        except (TimeoutError, ConnectionError) as error:
            reason = repr(error)
        if attempt < attempts:
            time.sleep(first_backoff * 2 ** (attempt - 1))
    raise WebhookError(f"not delivered after {attempts} attempts: {reason}")
