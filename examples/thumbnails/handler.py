"""Thumbnails of uploaded photos: the classic S3 → Lambda function, unchanged.

For each record of the S3 event the object is downloaded, shrunk with Pillow to fit
THUMBNAIL_SIZE (aspect ratio kept) and uploaded next to it under ``thumbnails/`` with the
same file name: ``uploads/cat.jpg`` → ``thumbnails/cat.jpg``.

Nothing here knows about kfn: boto3 finds the store through ``AWS_ENDPOINT_URL_S3`` and the
keys through ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, all set by the Function's env,
exactly as Lambda sets them for a function's role. Keys in S3 events are URL-encoded
(``my+cat.jpg`` for ``my cat.jpg``), hence ``unquote_plus``.
"""

import io
import logging
import os
import posixpath
import urllib.parse

import boto3
from PIL import Image

logger = logging.getLogger()
logger.setLevel(logging.INFO)

s3 = boto3.client("s3")
SIZE = int(os.environ.get("THUMBNAIL_SIZE", "128"))
PREFIX = "thumbnails/"


def handler(event, context):
    made = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        target = PREFIX + posixpath.basename(key)
        original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        thumbnail = resize(original)
        s3.put_object(Bucket=bucket, Key=target, Body=thumbnail, ContentType="image/jpeg")
        logger.info(
            "%s/%s (%d bytes) -> %s (%d bytes)", bucket, key, len(original), target, len(thumbnail)
        )
        made.append(target)
    return {"thumbnails": made}


def resize(data):
    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((SIZE, SIZE))
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=85)
        return out.getvalue()
