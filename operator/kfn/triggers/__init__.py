"""Trigger workers: programs that turn a source (a schedule, a stream, a bucket) into invocations.

Each kind has its own package and runs as its own process, next to the activator. All of
them invoke functions through the activator's invoke API, so an event wakes a function at
zero, respects its concurrency and, for asynchronous sources, gets Lambda's retries.
"""
