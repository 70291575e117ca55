"""The benchmarks' plots: real PNG files drawn from numbers measured in the test itself."""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import struct
import time

import pytest
from bench import plots, pod_start

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def timings(size: int, trials: int, algorithm: str = "sha256") -> list[float]:
    """Milliseconds to hash ``size`` KiB, ``trials`` times: a small real computation."""
    data = bytes(range(256)) * 4 * size
    measured = []
    for _ in range(trials):
        started = time.perf_counter()
        hashlib.new(algorithm, data).digest()
        measured.append((time.perf_counter() - started) * 1000)
    return measured


def png_size(path: pathlib.Path) -> tuple[int, int]:
    """Width and height from a PNG's header, after checking its signature and IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_a_distribution_of_measured_timings_is_written_as_a_png(tmp_path: pathlib.Path) -> None:
    small, large = timings(64, 15), timings(512, 15)
    floor = timings(8, 15)

    path = plots.distribution(
        tmp_path / "sub" / "hashing.png",
        {"64 KiB": small, "512 KiB": large},
        floors={"8 KiB": floor},
        title="SHA-256",
        xlabel="ms",
    )

    assert path == tmp_path / "sub" / "hashing.png"
    width, _ = png_size(path)
    assert width == 800
    assert 10_000 < path.stat().st_size < 100_000


def test_a_distribution_grows_a_row_per_series(tmp_path: pathlib.Path) -> None:
    def draw(name: str, sizes: list[int]) -> tuple[int, int]:
        series = {f"{size} KiB": timings(size, 5) for size in sizes}
        return png_size(plots.distribution(tmp_path / name, series, title="t", xlabel="ms"))

    few = draw("few.png", [8, 64, 512])
    many = draw("many.png", [8, 16, 32, 64, 128, 256, 512, 1024])

    assert few[0] == many[0] == 800
    assert many[1] > few[1]


def test_a_timeline_has_a_panel_per_series_on_one_time_axis(tmp_path: pathlib.Path) -> None:
    started = time.monotonic()
    at, per_call, cumulative = [], [], []
    for size in range(1, 41):
        per_call.append(timings(size * 16, 1)[0])
        cumulative.append(sum(per_call))
        at.append(time.monotonic() - started)

    path = plots.timeline(
        tmp_path / "timeline.png",
        at,
        [("ms per hash", per_call), ("ms in all", cumulative), ("hashes", list(range(1, 41)))],
        title="hashing over time",
        marks={"halfway": at[19]},
    )

    width, height = png_size(path)
    assert width == 800
    assert height == round((1.8 * 3 + 0.8) * plots.DPI)
    assert path.stat().st_size > 10_000


def test_grouped_bars_leave_out_a_missing_value(tmp_path: pathlib.Path) -> None:
    sizes = [16, 128, 1024]
    rates = {
        "sha256 MiB/s": [size / 1024 / (min(timings(size, 5)) / 1000) for size in sizes],
        "blake2b MiB/s": [
            None,
            *(size / 1024 / (min(timings(size, 5, "blake2b")) / 1000) for size in sizes[1:]),
        ],
    }

    path = plots.grouped_bars(
        tmp_path / "bars.png",
        [f"{size} KiB" for size in sizes],
        rates,
        title="throughput",
        xlabel="input",
        ylabel="MiB/s",
        log=True,
    )

    assert png_size(path) == (800, 450)
    assert path.stat().st_size > 10_000


def test_the_plot_option_is_off_unless_given_a_path() -> None:
    parser = argparse.ArgumentParser()
    plots.add_argument(parser)

    assert parser.parse_args([]).plot is None
    assert parser.parse_args(["--plot", "docs/img/x.png"]).plot == pathlib.Path("docs/img/x.png")


@pytest.mark.parametrize("count", [1, 2, 5, 10, 11, 40])
def test_the_plotted_median_is_the_p50_the_benchmarks_print(count: int) -> None:
    values = timings(4, count)

    assert plots.median(values) == pod_start.percentile(values, 50)
    assert plots.median(values) in values
    assert plots.percentile(values, 99) == pod_start.percentile(values, 99)
