"""The scale timeline's reading of the activator's queue depth, in both label forms."""

from __future__ import annotations

from bench import scale_timeline

PAGE_BY_PATH = """\
# HELP kfn_activator_queue_depth Requests waiting for capacity.
# TYPE kfn_activator_queue_depth gauge
kfn_activator_queue_depth{function="bench/ramp"} 7.0
kfn_activator_queue_depth{function="bench/other"} 3.0
kfn_activator_queue_depth{function="elsewhere/ramp"} 5.0
kfn_activator_in_flight{function="bench/ramp"} 2.0
"""

PAGE_BY_LABELS = """\
# TYPE kfn_activator_queue_depth gauge
kfn_activator_queue_depth{namespace="bench",function="ramp"} 4.0
kfn_activator_queue_depth{namespace="elsewhere",function="ramp"} 5.0
kfn_activator_queue_depth_total{namespace="bench",function="ramp"} 9.0
kfn_activator_queue_capacity{namespace="bench",function="ramp"} 100.0
"""


def test_the_queue_depth_is_read_from_the_namespace_slash_name_label() -> None:
    assert scale_timeline.queue_depth(PAGE_BY_PATH, "bench", "ramp") == 7.0


def test_the_queue_depth_is_read_from_separate_namespace_and_function_labels() -> None:
    assert scale_timeline.queue_depth(PAGE_BY_LABELS, "bench", "ramp") == 4.0


def test_a_function_the_activator_does_not_know_has_an_empty_queue() -> None:
    assert scale_timeline.queue_depth(PAGE_BY_PATH, "bench", "missing") == 0.0


def test_the_ramp_sends_faster_as_it_goes_and_holds_at_the_peak() -> None:
    times = scale_timeline.send_times(start=2, peak=20, ramp=10, hold=5)
    first_second = sum(1 for t in times if t < 1)
    ninth_second = sum(1 for t in times if 9 <= t < 10)
    held = sum(1 for t in times if 10 <= t < 15)

    assert first_second in (2, 3)
    assert 17 <= ninth_second <= 20
    assert held in (100, 101)
    assert times == sorted(times)
    assert times[-1] < 15
