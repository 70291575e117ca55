"""Says which runtime and interpreter run it."""

import os
import platform


def handler(event, context):
    return {"executionEnv": os.environ["AWS_EXECUTION_ENV"], "version": platform.python_version()}
