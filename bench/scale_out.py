"""Scale-out figures (issue 10, item 7): store throughput on both backends, and engines on one PostgreSQL.

    python -m bench.scale_out                       # a throw-away PostgreSQL cluster (initdb), ~3 min
    python -m bench.scale_out --postgres URL        # an existing, empty database
    python -m bench.scale_out --quick               # smoke run

1. Store throughput (``bench._store_bench``): reserve + settle pairs per second, in
   process, on SQLite and on PostgreSQL: on one card (one task: a card takes one call
   at a time), over ``--cards`` cards by one task, and by ``--tasks`` concurrent tasks.
2. Engines on one PostgreSQL: the benchmark's database (``bench._prepare``, bound
   callers) copied to PostgreSQL with ``ivr db copy``; the bound-caller dialogue
   captured through the fake Asterisk, then replayed by the benchmark's driver
   (``bench._driver``) at ``--concurrency`` calls in flight: against one engine, then
   against two engines at once (the callers split between them, each engine with half
   the concurrency), each ``ivr serve`` its own process on the same database. Figures:
   calls per second together, CPU ms per call of each engine, and a check that every
   call left one CDR and no hold is left open.

3. Round trips (throw-away cluster only): statements per reserve+settle pair and per
   bound call's hold + settlement with its CDR, counted in PostgreSQL's own log.

All processes share this machine's cores (``os.cpu_count()``): the engines, the
drivers and PostgreSQL's backends. Results: a table on stdout and a JSON file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import _proc
from .__main__ import Bench, _machine, _merge
from ._prepare import prepare
from ._stats import distribution
from ._store_bench import store_throughput
from ._workload import capture

__all__ = ["main"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--postgres", help="an empty PostgreSQL database URL (default: a throw-away cluster)")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    p.add_argument("--cards", type=int, help="cards of the store throughput test (default 10000)")
    p.add_argument("--pairs", type=int, help="reserve+settle pairs per store test (default 3000)")
    p.add_argument("--tasks", type=int, default=50, help="concurrent tasks of the many-cards test (default 50)")
    p.add_argument("--calls", type=int, help="calls per engine run (default 3000)")
    p.add_argument("--concurrency", type=int, help="calls in flight, all engines together (default 50)")
    p.add_argument("--no-store", action="store_true", help="skip the store throughput test")
    p.add_argument("--no-engines", action="store_true", help="skip the engine runs")
    p.add_argument("--output", type=Path, help="results JSON (default bench/results/scale-out-<time>.json)")
    a = p.parse_args(argv)
    a.cards = a.cards or (200 if a.quick else 10_000)
    a.pairs = a.pairs or (200 if a.quick else 3000)
    a.calls = a.calls or (200 if a.quick else 3000)
    a.concurrency = a.concurrency or (10 if a.quick else 50)
    a.drivers = 1
    return a


def _throwaway_postgres() -> Any:
    """The test suite's throw-away cluster (``tests/postgres.py``): initdb, loopback, torn down after."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.postgres import PostgresServer, _bin_dir

    bin_dir = _bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql, or --postgres URL)")
    server = PostgresServer(bin_dir)
    server.start()
    return server


def _store(a: argparse.Namespace, workdir: Path, postgres_url: str) -> dict[str, Any]:
    out = {}
    for name, database in (("sqlite", str(workdir / "store.sqlite3")), ("postgresql", postgres_url)):
        print(f"store throughput: {name}", file=sys.stderr)
        out[name] = asyncio.run(store_throughput(database, cards=a.cards, pairs=a.pairs, tasks=a.tasks))
    return out


async def _round_trips(server: Any, pairs: int = 50) -> dict[str, Any]:
    """Statements (each one round trip) per call-path pair, counted in PostgreSQL's own log
    (``log_statement = all``), after a warm-up that prepared them: BEGIN, COMMIT and the
    pool's reset count as well."""
    import re

    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

    from ivr import operations as ops
    from ivr.clock import SystemClock
    from rating.models import Cdr, HoldCall
    from rating.store import open_store

    url = server.create_database("round_trips")
    now = SystemClock().now_ms
    store = open_store(url)
    await store.open()
    out: dict[str, Any] = {}
    try:
        project = await ops.create_project(store, name="rt", numbers=["+41441234500"], service="Local/1@x/n",
                                           region="CH", now_ms=now())
        card = (await ops.create_card(store, b"r" * 32, project=project, minutes=6000, note="rt",
                                      now_ms=now())).card
        caller = "+41790000001"
        await ops.bind(store, card=card, number=caller, now_ms=now())

        async def engine_pair(uid: str) -> None:
            found = await store.reserve_bound(project_id=project.id, caller=caller, uniqueid=uid, rule=project.rule,
                                              max_calls=1, hold_s=60, now_ms=now(),
                                              call=HoldCall(caller_raw=caller, caller_e164=caller, dialled="x",
                                                            start_ms=now()))
            assert found is not None and found.grant is not None
            await store.settle_and_record(found.grant, debit_s=1, now_ms=now(), cdr=Cdr(
                uniqueid=uid, project_id=project.id, card_id=card.id, caller_raw=caller, caller_e164=caller,
                dialled="x", destination=None, start_ms=now(), answer_ms=None, end_ms=now(), talk_s=1,
                debited_s=0, outcome="ANSWERED", hangup_side="caller"))

        async def store_pair(uid: str) -> None:
            grant = await store.reserve(card_id=card.id, uniqueid=uid, rule=project.rule, max_calls=1, hold_s=60,
                                        now_ms=now())
            await store.settle(grant, debit_s=1, uniqueid=uid, now_ms=now())

        for name, pair in (("reserve+settle", store_pair), ("reserve_bound+settle_and_record", engine_pair)):
            for i in range(5):
                await pair(f"{name}.warm.{i}")
            admin = await asyncpg.connect(url)
            try:
                await admin.execute("ALTER SYSTEM SET log_statement = 'all'")
                await admin.execute("SELECT pg_reload_conf()")
                await asyncio.sleep(0.5)
                log = Path(server.root) / "log"
                start = log.stat().st_size
                for i in range(pairs):
                    await pair(f"{name}.{i}")
                await admin.execute("ALTER SYSTEM RESET log_statement")
                await admin.execute("SELECT pg_reload_conf()")
            finally:
                await admin.close()
            text = log.read_bytes()[start:].decode(errors="replace")
            lines = [line for line in text.splitlines() if re.search(r"LOG:  (statement|execute)", line)
                     and "log_statement" not in line and "pg_reload_conf" not in line]
            out[name] = round(len(lines) / pairs, 2)
    finally:
        await store.close()
    return out


def _drive_together(bench: Bench, servers: list[_proc.Server], *, concurrency: int,
                    calls: int) -> list[dict[str, Any]]:
    """The bound-caller load on every server at once, callers split between them."""
    assert bench.plan is not None
    callers = bench.plan.bound_callers
    k = len(servers)
    jobs = []
    for i, server in enumerate(servers):
        [job] = bench._split(server, {"mode": "closed", "scenario": "bound",
                                      "concurrency": concurrency // k + (1 if i < concurrency % k else 0),
                                      "calls": calls // k + (1 if i < calls % k else 0)})
        job["callers"] = callers[i::k]
        jobs.append(job)
    results = bench.run_drivers(jobs, "together")
    bench.engine_calls += sum(int(r["started"]) for r in results)
    return results


def _engines(a: argparse.Namespace, workdir: Path, postgres_url: str) -> dict[str, Any]:
    bench = Bench(a, workdir)
    bound = max(2 * a.concurrency, 100)
    print(f"engines: preparing {bound} bound cards, copying them to PostgreSQL", file=sys.stderr)
    plan = asyncio.run(prepare(workdir / "bench.sqlite3", bound=bound, pin_cards=10, blacklist=100))
    ivr = Path(sys.executable).with_name("ivr")
    copied = subprocess.run([str(ivr), "db", "copy", "--from", f"sqlite:{plan.database}", "--to", postgres_url],
                            capture_output=True, text=True)
    if copied.returncode != 0:
        raise RuntimeError(f"ivr db copy failed: {copied.stderr.strip()}")
    plan.database = postgres_url
    bench.plan = plan
    (workdir / "plan.json").write_text(json.dumps(plan.to_json()))

    def engine(name: str) -> _proc.Server:
        return bench.start_engine(name, {"IVR_SECRET_FILE": plan.secret_file,
                                         "IVR_STATE_DIR": str(workdir / f"{name}.state")})

    out: dict[str, Any] = {"bound_cards": bound, "concurrency": a.concurrency, "calls": a.calls}
    first = engine("engine-a")
    servers = [first]
    try:
        scripts, _ = asyncio.run(capture("127.0.0.1", first.port, plan))
        bench.engine_calls += len(scripts)
        bench.scripts = {"bound": scripts["bound"]}
        print("engines: one engine", file=sys.stderr)
        bench.run_closed(first, "bound", min(10, a.concurrency), 10 if a.quick else 200)  # warm-up
        one = bench.run_closed(first, "bound", a.concurrency, a.calls)
        out["one_engine"] = {k: one[k] for k in ("calls", "ok", "failed", "wall_s", "calls_per_s", "cpu_ms_per_call",
                                                 "setup")}
        second = engine("engine-b")
        servers.append(second)
        bench.run_closed(second, "bound", min(10, a.concurrency), 10 if a.quick else 200)  # warm-up
        print("engines: two engines at once", file=sys.stderr)
        cpu0 = [s.cpu() for s in servers]
        results = _drive_together(bench, servers, concurrency=a.concurrency, calls=a.calls)
        cpu = [s.cpu() - c for s, c in zip(servers, cpu0, strict=True)]
        merged = _merge(results)
        wall = max(r["wall_s"] for r in results)
        out["two_engines"] = {
            "calls": merged["started"], "ok": merged["ok"], "failed": merged["failed"], "wall_s": round(wall, 3),
            "calls_per_s": round(merged["ok"] / wall, 1),
            "per_engine": [{"engine": s.name, "ok": r["ok"], "calls_per_s": round(r["ok"] / r["wall_s"], 1),
                            "cpu_ms_per_call": round(c / max(1, r["ok"]) * 1000, 3)}
                           for s, r, c in zip(servers, results, cpu, strict=True)],
            "setup": distribution(merged["setup_us"]), "violations": merged["violations"]}
    finally:
        for server in servers:
            server.stop()
    out["cdr_check"] = asyncio.run(_cdr_check(postgres_url, bench.engine_calls))
    return out


async def _cdr_check(url: str, calls: int) -> dict[str, Any]:
    from rating.store import open_store

    store = open_store(url)
    await store.open()
    try:
        cdrs = await store.find_cdrs()
        holds = await store.open_holds()
    finally:
        await store.close()
    return {"calls_made": calls, "cdrs": len(cdrs), "ok": len(cdrs) == calls and not holds,
            "open_holds": len(holds)}


def _table(results: dict[str, Any]) -> str:
    lines = []
    if "store" in results:
        lines += ["store: reserve+settle pairs/s   one card   many cards (1 task)   many cards (concurrent)"]
        for name, r in results["store"].items():
            lines.append(f"  {name:<28} {r['one_card']['pairs_per_s']:>9.0f}"
                         f"   {r['many_cards_sequential']['pairs_per_s']:>19.0f}"
                         f"   {r['many_cards_concurrent']['pairs_per_s']:>23.0f}   ({r['cards_created']} cards)")
    if "postgresql_statements_per_pair" in results:
        lines.append("PostgreSQL statements (round trips) per pair: " + ", ".join(
            f"{k} {v}" for k, v in results["postgresql_statements_per_pair"].items()))
    if "engines" in results:
        e = results["engines"]
        one, two = e["one_engine"], e["two_engines"]
        lines.append(f"engines on one PostgreSQL, {e['concurrency']} calls in flight, bound callers:")
        lines.append(f"  one engine:  {one['calls_per_s']:>7.1f} calls/s, {one['cpu_ms_per_call']:.3f} ms CPU/call")
        per = ", ".join(f"{p['engine']} {p['cpu_ms_per_call']:.3f} ms" for p in two["per_engine"])
        lines.append(f"  two engines: {two['calls_per_s']:>7.1f} calls/s together; CPU/call {per}")
        lines.append(f"  CDR check: {e['cdr_check']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    started = time.time()
    server = None if a.postgres else _throwaway_postgres()
    url = a.postgres if server is None else server.create_database("bench")
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                               "command": " ".join(["python -m bench.scale_out", *(argv or sys.argv[1:])]),
                               "machine": _machine(),
                               "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()
                                           if k != "postgres"}}
    try:
        with tempfile.TemporaryDirectory(prefix="ivr-scale-") as tmp:
            workdir = Path(tmp)
            if not a.no_engines:  # first: ivr db copy wants an empty database
                results["engines"] = _engines(a, workdir, url)
            if not a.no_store:
                store_url = server.create_database("store") if server else url
                results["store"] = _store(a, workdir, store_url)
            if server is not None:
                print("round trips per pair (PostgreSQL's log)", file=sys.stderr)
                results["postgresql_statements_per_pair"] = asyncio.run(_round_trips(server))
    finally:
        if server is not None:
            server.destroy()
    results["seconds"] = round(time.time() - started, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = a.output or Path(__file__).with_name("results") / time.strftime("scale-out-%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(_table(results))
    print(f"results: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
