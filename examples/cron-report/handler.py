"""A weekday morning report, written exactly as for AWS Lambda behind an EventBridge schedule.

The Trigger sends EventBridge's "Scheduled Event" (``time`` is the tick in UTC, ``resources``
names the schedule). The report says which working day it covers, when it was due in the
office's time zone and how late it started; a real report would query a database or an API
here and mail or post the summary.
"""

import datetime
import logging
import os
import zoneinfo

logger = logging.getLogger()
logger.setLevel(logging.INFO)

OFFICE = zoneinfo.ZoneInfo(os.environ.get("REPORT_TIME_ZONE", "Europe/Berlin"))


def handler(event, context):
    due = datetime.datetime.fromisoformat(event["time"])
    local = due.astimezone(OFFICE)
    started = datetime.datetime.now(datetime.UTC)
    report = {
        "day": local.strftime("%A %Y-%m-%d"),
        "week": local.isocalendar().week,
        "due": local.isoformat(timespec="seconds"),
        "lateSeconds": round((started - due).total_seconds(), 3),
        "schedule": (event.get("resources") or ["?"])[0],
    }
    logger.info(
        "morning report for %s (week %d): due %s, started %.3f s late, schedule %s",
        report["day"],
        report["week"],
        report["due"],
        report["lateSeconds"],
        report["schedule"],
    )
    return report
