"""Logs at every level, for the JSON log format's tests (handlers/nodejs/json_logs.js is the
same in JavaScript). Unlike app.py it leaves the root logger's level to the runtime."""

import logging
import time

log = logging.getLogger("orders")


class BoomError(Exception):
    pass


def levels(event, context):
    log.debug("a debug record")
    log.info("an info record", extra={"order": 42})
    log.warning("a warn record")
    log.error("an error record")
    log.critical("a fatal record")
    print("a printed line")
    try:
        raise BoomError("caught and logged")
    except BoomError:
        log.exception("an exception record")
    return {}


def fail(event, context):
    raise BoomError("the handler failed on purpose")


def slow(event, context):
    time.sleep(event.get("ms", 0) / 1000)
    return {}
