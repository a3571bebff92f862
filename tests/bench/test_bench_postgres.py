"""``python -m bench --postgresql``: the engine on a throw-away PostgreSQL server too,
end to end with tiny counts. Asserts the rows and that every engine-pg call left a
CDR and no open hold — never timing, which depends on the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import need_postgres

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_benchmark_runs_the_engine_on_postgresql_too(tmp_path: Path) -> None:
    need_postgres()
    output = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--postgresql", "--scenarios", "bound", "--levels", "1,5",
         "--calls", "20", "--parked", "0", "--no-references", "--no-log-compare", "--no-store", "--no-profile",
         "--output", str(output), "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(output.read_text())
    for server in ("engine", "engine-pg"):
        rows = [x for x in r["load"] if x["server"] == server and x["scenario"] == "bound"]
        assert sorted(x["concurrency"] for x in rows) == [1, 5]
        assert all(x["failed"] == 0 and x["ok"] == x["calls"] for x in rows)
        [paced] = [x for x in r["paced"] if x["server"] == server]
        assert paced["failed"] == 0 and paced["ok"] > 0
    pg = [x for x in r["load"] if x["server"] == "engine-pg"]
    assert all(x["postgres_cpu_ms_per_call"] >= 0 for x in pg)
    check = r["postgresql"]["cdr_check"]
    assert check["ok"] and check["calls_made"] > 0 and check["open_reservations"] == 0
    assert "cpu_per_bound_call_postgresql" in r["verdict"]
    assert "engine CPU <= 1.5 ms per bound-caller call (PostgreSQL)" in proc.stdout
