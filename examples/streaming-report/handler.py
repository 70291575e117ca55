"""The same report from Python: a generator handler streams its answer as it yields.

GET /report-py?rows=100000  → text/csv, sent as the rows are made

The first item, a dict, sets the status and headers; every later item is a piece of the body.
Lambda has no streaming for Python: this is kfn's (docs/streaming.md).
"""

REGIONS = ("north", "south", "east", "west")


def handler(event, context):
    query = event.get("queryStringParameters") or {}
    rows = min(int(query.get("rows", "10000")), 10_000_000)
    yield {"statusCode": 200, "headers": {"Content-Type": "text/csv"}}
    yield "day,region,orders,revenue\n"
    lines = []
    for i in range(rows):
        orders = (i * 7919) % 97
        lines.append(f"{1 + i % 28},{REGIONS[i % len(REGIONS)]},{orders},{orders * 12.5:.2f}\n")
        if len(lines) == 1000:
            yield "".join(lines)  # the next rows are made once the client took these
            lines = []
    if lines:
        yield "".join(lines)
