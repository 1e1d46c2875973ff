"""``rtstream plot``: a report's timing series drawn into a PNG, headless."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rtstream.cli import main

pytest.importorskip("matplotlib")


def series(t0: float, n: int, value: float) -> dict:
    return {"every": 1, "count": n, "t": [t0 + 0.02 * k for k in range(n)], "v": [value] * n}


REPORT = {
    "schema_version": 3,
    "pipelines": [
        {
            "pipeline": "jitter",
            "instance": 1,
            "stages": [
                {"type": "jitter_buffer", "series": {"delay": series(10.0, 50, 0.1), "target": series(10.0, 50, 0.08)}},
                {
                    "type": "pacer",
                    "series": {
                        "lateness": series(10.1, 50, 0.001),
                        "underruns": {"count": 1, "t": [10.5]},
                        "clears": {"count": 1, "t": [10.7]},
                    },
                },
            ],
        }
    ],
    "services": {
        "twilio": {
            "per_call": [
                {"call": 1, "series": {"deviation": series(10.12, 49, 0.002), "gaps": {"count": 0, "t": []}}},
                {"call": 2, "series": {"deviation": series(30.0, 10, 0.002), "gaps": {"count": 1, "t": [30.1]}}},
            ]
        }
    },
}


def test_plot_writes_a_png_with_a_row_per_pipeline_and_per_unmatched_call(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(REPORT))
    out = tmp_path / "calls.png"
    result = CliRunner().invoke(main, ["plot", str(report), "-o", str(out)])
    assert (result.exit_code, result.output) == (
        0,
        f"wrote {out}: 1 pipelines, 2 receiver calls (1 matched to a pipeline)\n",
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_report_without_series_is_refused(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"pipelines": [{"pipeline": "a", "stages": [{"statistics": {}}]}], "services": {}}))
    result = CliRunner().invoke(main, ["plot", str(report), "-o", str(tmp_path / "x.png")])
    assert (result.exit_code, result.output) == (
        2,
        "Error: the report has no timing series to plot (no pacer, jitter buffer or telephony simulator ran)\n",
    )
