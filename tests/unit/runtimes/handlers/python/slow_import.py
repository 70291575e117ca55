"""Takes a while to import, as a module with heavy dependencies does: ``SLOW_IMPORT_MS``
milliseconds (1000 when unset)."""

import os
import time

time.sleep(int(os.environ.get("SLOW_IMPORT_MS", "1000")) / 1000)


def handler(event, context):
    return event


def timed(event, context):
    """Says how much time it had when it started, then works for ``event["ms"]``."""
    at_start = context.get_remaining_time_in_millis()
    time.sleep(event.get("ms", 0) / 1000)
    at_end = context.get_remaining_time_in_millis()
    return {"remaining_at_start": at_start, "remaining_at_end": at_end}
