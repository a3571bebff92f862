"""The benchmark's smoke run: ``python -m bench --quick`` end to end, so it never rots.

Real processes as in a full run (the engine via ``ivr serve``, both references, a
driver process), tiny counts. Asserts the structure of the results and that every
call made on the engine left a CDR in the database — never timing, which depends
on the machine.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CALLS = 20
PARKED = 50


@pytest.mark.slow
def test_quick_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    workdir = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--calls", str(CALLS), "--parked", str(PARKED),
         "--no-profile", "--output", str(output), "--workdir", str(workdir)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"results: {output}" in proc.stdout
    for heading in ("THROUGHPUT AND CPU PER CALL", "PACED LOAD", "RATIOS", "LATENCY", "HOLDING POWER", "LOGGING",
                    "STORE THROUGHPUT", "TARGETS"):
        assert heading in proc.stdout
    r = json.loads(output.read_text())

    levels = r["options"]["levels"]
    assert len(levels) == 3
    scenarios = ["bound", "first_pin", "blocked"]
    assert set(r["dialogue"]) == set(scenarios)
    for server in ("engine", "bare", "panoramisk"):
        for scenario in scenarios:
            for level in levels:
                [row] = [x for x in r["load"] if x["server"] == server and x["scenario"] == scenario
                         and x["concurrency"] == level]
                assert row["failed"] == 0 and row["violations"] == [], row["violations"]
                assert row["ok"] == row["calls"] >= level
                assert row["calls_per_s"] > 0 and row["cpu_ms_per_call"] >= 0
                for figure in ("command_rtt", "setup", "call"):
                    dist = row[figure]
                    assert set(dist) == {"n", "p50_ms", "p99_ms", "max_ms"}
                    assert dist["n"] > 0 and 0 <= dist["p50_ms"] <= dist["p99_ms"] <= dist["max_ms"]
                if server == "engine":
                    assert row["per_command"] and row["threads_ms_per_call"]
    for scenario in scenarios:
        for ref in ("bare", "panoramisk"):
            ratio = r["verdict"]["ratios"][scenario][ref]
            assert set(ratio) == {"cpu_per_call", "throughput"} and ratio["throughput"] > 0

    paced = {(x["server"], x["scenario"]): x for x in r["paced"]}
    assert set(paced) == {("engine", s) for s in scenarios} | {("bare", "bound")}
    for row in paced.values():
        assert row["failed"] == 0 and row["ok"] == row["calls"] > 0 and row["cpu_ms_per_call"] >= 0
    [repeat] = r["repeat"]
    assert repeat["runs"] == 1 and repeat["min"] <= repeat["median"] <= repeat["max"]

    [hold] = r["hold"]
    assert hold["server"] == "engine" and hold["parked"] == hold["wanted"] == PARKED
    assert hold["parked_calls_ok"] == PARKED and hold["parked_calls_failed"] == 0
    assert hold["new_calls"]["ok"] == hold["new_calls"]["calls"] > 0 and hold["new_calls"]["failed"] == 0
    assert hold["rss_parked_mb"] > 0 and hold["peak_rss_mb"] >= hold["rss_parked_mb"]
    assert set(hold["new_calls"]["setup"]) == {"n", "p50_ms", "p99_ms", "max_ms"}

    assert r["logging"]["default"]["lines_per_call"] > 0
    assert "cpu_ms_per_call" in r["logging"]["warning"]
    for test in ("one_card", "many_cards_sequential", "many_cards_concurrent"):
        assert r["store"][test]["pairs_per_s"] > 0
    assert {"cpu_per_bound_call", "throughput_vs_bare", "parked", "integrity"} <= set(r["verdict"])
    assert any("panoramisk" in note for note in r["notes"])

    check = r["cdr_check"]
    with sqlite3.connect(workdir / "bench.sqlite3") as db:
        cdrs = db.execute("SELECT COUNT(*) FROM cdrs").fetchone()[0]
        open_holds = db.execute("SELECT COUNT(*) FROM reservations WHERE state = 'open'").fetchone()[0]
    assert cdrs == check["cdrs"] == check["calls_made"] > 0
    assert open_holds == 0
