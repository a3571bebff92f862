"""``python -m bench.scale_out --quick`` end to end on a throw-away PostgreSQL, so it never
rots: the structure of the results, every engine call's CDR and no hold left open —
never timing, which depends on the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import need_postgres

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_scale_out_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    need_postgres()
    output = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale_out", "--quick", "--calls", "40", "--concurrency", "4", "--cards", "20",
         "--pairs", "40", "--output", str(output)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(output.read_text())
    assert set(r["store"]) == {"sqlite", "postgresql"}
    for backend in r["store"].values():
        assert backend["cards_created"] == 20
        assert {k: backend[k]["pairs"] for k in ("one_card", "many_cards_sequential", "many_cards_concurrent")} == {
            "one_card": 40, "many_cards_sequential": 40, "many_cards_concurrent": 40}
    engines = r["engines"]
    assert engines["one_engine"]["ok"] == 40 and engines["one_engine"]["failed"] == 0
    two = engines["two_engines"]
    assert two["ok"] == 40 and two["failed"] == 0 and not two["violations"]
    assert [p["engine"] for p in two["per_engine"]] == ["engine-a", "engine-b"]
    assert all(p["ok"] == 20 for p in two["per_engine"])       # both engines took calls
    assert engines["cdr_check"]["ok"] and engines["cdr_check"]["open_holds"] == 0
    assert r["postgresql_statements_per_pair"] == {"reserve+settle": 3.0, "reserve_bound+settle_and_record": 3.0}
    assert "two engines:" in proc.stdout
