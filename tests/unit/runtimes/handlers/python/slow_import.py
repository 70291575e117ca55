"""Takes a second to import, as a module with heavy dependencies does."""

import time

time.sleep(1.0)


def handler(event, context):
    return event
