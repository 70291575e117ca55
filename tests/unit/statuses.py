"""Function statuses as the autoscaler writes them, for tests of the models and the builders
that read them."""

from __future__ import annotations

from typing import Any


def rollout_in_progress(step_started: str) -> dict[str, Any]:
    """The status of a Function whose alias ``live`` is moving from version 2 to 3: at its
    first step since ``step_started``, 10 % on version 3."""
    return {
        "aliases": [
            {
                "name": "live",
                "routes": [{"version": 2, "weight": 90}, {"version": 3, "weight": 10}],
                "rollout": {
                    "from": 2,
                    "to": 3,
                    "step": 0,
                    "stepStarted": step_started,
                    "outcome": "Progressing",
                },
            }
        ]
    }
