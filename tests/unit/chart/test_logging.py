"""The chart's logging values: one log format, handed to every kfn component."""

from __future__ import annotations

import pathlib
from typing import Any

from tests.unit.chart import chart


def _env(container: dict[str, Any], name: str) -> Any:
    found = [e for e in container["env"] if e["name"] == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0].get("value")


def test_every_component_is_told_the_log_format_text_unless_the_values_say_json(
    helm: pathlib.Path,
) -> None:
    default = chart.render(helm)
    json_ = chart.render(helm, {"logging": {"format": "json"}})
    for component in chart.WORKLOADS:
        assert _env(chart.container(default, component), "KFN_LOG_FORMAT") == "text", component
        assert _env(chart.container(json_, component), "KFN_LOG_FORMAT") == "json", component


def test_the_schema_refuses_a_log_format_kfn_does_not_write(helm: pathlib.Path) -> None:
    message = chart.render_error(helm, "logging.format=xml")
    assert "logging" in message
    assert "format" in message
