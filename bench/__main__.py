"""``python -m bench``: prove the engine is never the bottleneck.

Prepares a SQLite database, starts the engine as its own process (``ivr --database
FILE serve --port P --metrics-port 0``) and two references (``bench.bare_server``,
``bench.panoramisk_server``), drives each with light Asterisk peers from separate
processes (``bench._driver``) over loopback, and prints a table; the full results go
to ``bench/results/<time>.json`` (or ``--output``). See ``--help`` for the knobs;
``--quick`` is a smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from . import _postgres, _proc, _profile
from ._prepare import Plan, prepare
from ._report import render
from ._stats import distribution
from ._store_bench import store_throughput
from ._workload import SCENARIOS, Script, capture

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGETS = {"cpu_ms_per_bound_call": 1.0, "cpu_ms_per_bound_call_postgresql": 1.5, "throughput_vs_bare": 0.5,
           "parked_rss_mb": 300.0,
           "parked_new_call_p99_ms": 20.0}
PANORAMISK_NOTE = ("panoramisk's FastAGI Application has known bugs: it spins forever when a peer closes"
                   " before the end of its headers, takes an unprompted HANGUP line for the reply to the"
                   " pending command and reads one line of a multi-line 520. This workload avoids all"
                   " three: every peer sends its whole agi_* block, no command gets a 520, the only"
                   " HANGUP line follows the reply to the last command (never read), and readiness is"
                   " announced on stdout instead of probed with a connect.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny counts (20 calls, 50 parked), no profile; seconds, not minutes")
    p.add_argument("--calls", type=int, help="calls per scenario and server at the throughput concurrency"
                   " (default 3000; quick 20)")
    p.add_argument("--concurrency", type=int, help="concurrent calls of the throughput runs (default 50)")
    p.add_argument("--levels", help="comma-separated concurrency levels for latency (default 1,50,500)")
    p.add_argument("--level-calls", type=int, help="calls per latency level other than the throughput one"
                   " (default: 300 at 1 concurrent call, else --calls)")
    p.add_argument("--parked", type=int, help="calls parked in Dial for the holding test (default 5000; 0: no"
                   " holding test)")
    p.add_argument("--hold-rate", type=float, help="new calls per second while parked (default 50)")
    p.add_argument("--hold-seconds", type=float, help="how long new calls arrive while parked (default 10)")
    p.add_argument("--store-cards", type=int, help="cards for the store throughput test (default 10000)")
    p.add_argument("--store-pairs", type=int, help="reserve+settle pairs per store test (default 5000)")
    p.add_argument("--scenarios", help=f"comma-separated scenarios (default all: {','.join(SCENARIOS)})")
    p.add_argument("--repeat", type=int, default=1,
                   help="run the bound-caller throughput load this many times and report the spread (default 1)")
    p.add_argument("--paced-rate", type=float, help="paced load: new calls per second (default 10; quick 10)")
    p.add_argument("--paced-seconds", type=float, help="paced load: how long calls arrive (default 30; quick 2)")
    p.add_argument("--paced-scale", type=float,
                   help="paced load: Asterisk's reply times (bench._driver.PACE_S) times this (default 1; quick 0.05)")
    p.add_argument("--no-paced", action="store_true", help="skip the paced load")
    p.add_argument("--no-store", action="store_true", help="skip the store throughput test")
    p.add_argument("--blacklist", type=int, default=100, help="blocked-number entries (default 100)")
    p.add_argument("--drivers", type=int, default=1, help="driver processes (default 1: 2-core machine)")
    p.add_argument("--postgresql", action="store_true",
                   help="also run the engine on PostgreSQL ('engine-pg': a throw-away server started as the"
                        " tests start one, tests/postgres.py): the load matrix, the repeats and the paced load,"
                        " with the server's own CPU per call beside the engine's")
    p.add_argument("--no-references", action="store_true", help="engine only, no bare/panoramisk runs")
    p.add_argument("--hold-references", action="store_true", help="also park calls on the references")
    p.add_argument("--profile", dest="profile", action="store_true", default=None,
                   help="profile the engine with py-spy under the bound-caller load (default: on, not --quick)")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--profile-native", action="store_true", help="profile C frames too (py-spy --native)")
    p.add_argument("--no-log-compare", action="store_true", help="skip the IVR_LOG_LEVEL=WARNING engine run")
    p.add_argument("--output", type=Path, help="results JSON (default bench/results/<time>.json)")
    p.add_argument("--workdir", type=Path, help="where the database and logs go (default: a temp dir)")
    args = p.parse_args(argv)
    quick = args.quick
    args.calls = args.calls or (20 if quick else 3000)
    args.concurrency = args.concurrency or (5 if quick else 50)
    levels = args.levels or ("1,5,20" if quick else "1,50,500")
    args.levels = sorted({int(x) for x in levels.split(",") if x.strip()} | {args.concurrency})
    args.parked = args.parked if args.parked is not None else (50 if quick else 5000)
    args.hold_rate = args.hold_rate or (20.0 if quick else 50.0)
    args.hold_seconds = args.hold_seconds or (1.0 if quick else 10.0)
    args.store_cards = args.store_cards or (200 if quick else 10_000)
    args.store_pairs = args.store_pairs or (200 if quick else 5000)
    if args.profile is None:
        args.profile = not quick
    args.scenarios = [x.strip() for x in (args.scenarios or ",".join(SCENARIOS)).split(",") if x.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.paced_rate = args.paced_rate or 10.0
    args.paced_seconds = args.paced_seconds or (2.0 if quick else 30.0)
    args.paced_scale = args.paced_scale if args.paced_scale is not None else (0.05 if quick else 1.0)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if min(args.levels) < 1 or args.calls < 1 or args.drivers < 1:
        p.error("counts and levels must be positive")
    return args


def level_calls(args: argparse.Namespace, level: int) -> int:
    if level == args.concurrency:
        return int(args.calls)
    if args.level_calls:
        return int(args.level_calls)
    if level == 1:
        return min(300, int(args.calls))
    return max(int(args.calls), level)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.plan: Plan | None = None
        self.scripts: dict[str, Script] = {}
        self.uid_next = 1_000
        self.new_next = 0
        self.engine_calls = 0   # calls placed on an engine process (each must leave a CDR)
        self.notes: list[str] = []
        self.pg_server: Any = None      # the PostgreSQL server of the engine-pg runs
        self.pg_plan: Plan | None = None

    def _pg_cpu(self, server: _proc.Server) -> float:
        if self.pg_server is None or server.name != "engine-pg":
            return 0.0
        return _postgres.server_cpu_seconds(self.pg_server)

    # --- processes -----------------------------------------------------------
    def start_engine(self, name: str, extra_env: dict[str, str] | None = None) -> _proc.Server:
        assert self.plan is not None
        port = _proc.free_port()
        ivr = Path(sys.executable).with_name("ivr")
        argv = [str(ivr), "--database", self.plan.database, "serve", "--port", str(port), "--metrics-port", "0"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}  # the defaults, really
        env.update(extra_env or {})
        return _proc.start(name, argv, port=port, log_path=self.workdir / f"{name}.log", env=env)

    def start_reference(self, module: str, name: str) -> _proc.Server:
        port = _proc.free_port()
        argv = [sys.executable, "-m", module, "--port", str(port), "--scripts", str(self.workdir / "commands.json"),
                "--plan", str(self.workdir / "plan.json")]
        return _proc.start(name, argv, port=port, log_path=self.workdir / f"{name}.log", ready="line")

    # --- driving -------------------------------------------------------------
    def _job(self, server: _proc.Server, **job: Any) -> dict[str, Any]:
        assert self.plan is not None
        base = {"host": "127.0.0.1", "port": server.port, "access": self.plan.access,
                "scripts": {k: v.to_json() for k, v in self.scripts.items()},
                "pins": self.plan.pins, "blocked": self.plan.blocked_callers,
                "callers": self.plan.bound_callers, "server_pid": server.pid}
        base.update(job)
        return base

    def _split(self, server: _proc.Server, job: dict[str, Any]) -> list[dict[str, Any]]:
        """One job per driver process, with its own callers, PIN cards and number ranges."""
        k = self.args.drivers
        jobs = []
        for i in range(k):
            part = self._job(server, **job)
            if "concurrency" in job:
                part["concurrency"] = job["concurrency"] // k + (1 if i < job["concurrency"] % k else 0)
            if "calls" in job:
                part["calls"] = job["calls"] // k + (1 if i < job["calls"] % k else 0)
            if "rate" in job:
                part["rate"] = job["rate"] / k
            if job.get("mode") == "hold":
                parked = job["parked"]
                callers = self.plan.bound_callers if self.plan else []
                part["parked"] = len(callers[:parked][i::k])
                part["callers"] = callers[:parked][i::k] + callers[parked:][i::k]
            else:
                part["callers"] = part["callers"][i::k]
                part["pins"] = part["pins"][i::k]
            n = int(part.get("calls", 0)) + int(part.get("parked", 0)) + int(part.get("rate", 0) * part.get(
                "duration_s", 0)) + 10
            part["uniqueid_base"] = self.uid_next
            part["new_caller_base"] = self.new_next
            self.uid_next += n
            if job.get("scenario") == "first_pin":
                self.new_next += n
            jobs.append(part)
        return jobs

    def run_drivers(self, jobs: list[dict[str, Any]], stem: str) -> list[dict[str, Any]]:
        """One driver process per job, all at once; their results in job order.
        Raises RuntimeError (with the driver's stderr) when one fails."""
        procs = []
        for i, part in enumerate(jobs):
            path = self.workdir / f"{stem}-{i}.json"
            path.write_text(json.dumps(part))
            out = self.workdir / f"{stem}-result-{i}.json"
            procs.append((subprocess.Popen([sys.executable, "-m", "bench._driver"], stdin=open(path, "rb"),  # noqa: SIM115
                                           stdout=open(out, "wb"), stderr=subprocess.PIPE), out))  # noqa: SIM115
        results = []
        for proc, out in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"driver failed ({proc.returncode}):\n{err.decode(errors='replace')[-3000:]}")
            results.append(json.loads(out.read_text()))
        return results

    def drive(self, server: _proc.Server, job: dict[str, Any]) -> list[dict[str, Any]]:
        results = self.run_drivers(self._split(server, job), "job")
        if server.name.startswith("engine"):
            self.engine_calls += sum(_started(r) for r in results)
        return results

    def run_closed(self, server: _proc.Server, scenario: str, level: int, calls: int, *,
                   per_command: bool = False) -> dict[str, Any]:
        threads0 = _proc.thread_cpu_seconds(server.pid)
        pg0 = self._pg_cpu(server)
        cpu0 = server.cpu()
        results = self.drive(server, {"mode": "closed", "scenario": scenario, "concurrency": level,
                                      "calls": calls, "per_command": per_command})
        cpu = server.cpu() - cpu0
        pg = self._pg_cpu(server) - pg0
        threads1 = _proc.thread_cpu_seconds(server.pid)
        merged = _merge(results)
        ok = max(1, merged["ok"])
        row: dict[str, Any] = {
            "server": server.name, "scenario": scenario, "concurrency": level, "calls": merged["started"],
            "ok": merged["ok"], "failed": merged["failed"], "violations": merged["violations"],
            "wall_s": round(merged["wall_s"], 3), "calls_per_s": round(merged["ok"] / merged["wall_s"], 1),
            "cpu_s": round(cpu, 3), "cpu_ms_per_call": round(cpu / ok * 1000, 3),
            "driver_cpu_ms_per_call": round(merged["driver_cpu_s"] / ok * 1000, 3),
            "driver_utilisation": round(merged["driver_cpu_s"] / (merged["wall_s"] * self.args.drivers), 2),
            "command_rtt": distribution(merged["rtt_us"]), "setup": distribution(merged["setup_us"]),
            "call": distribution(merged["call_us"]),
        }
        if self.pg_server is not None and server.name == "engine-pg":
            row["postgres_cpu_ms_per_call"] = round(pg / ok * 1000, 3)
        row["threads_ms_per_call"] = {
            ("event loop" if name.split(" ")[1] == str(server.pid) else f"thread {name}"):
                round((threads1[name] - threads0.get(name, 0.0)) / ok * 1000, 3)
            for name in threads1 if threads1[name] - threads0.get(name, 0.0) > 0}
        if per_command:
            row["per_command"] = {k: distribution(v) for k, v in merged["rtt_by_command"].items()}
        return row

    # --- phases --------------------------------------------------------------
    def load_matrix(self, server: _proc.Server) -> list[dict[str, Any]]:
        warm = 10 if self.args.quick else 200
        self.run_closed(server, "bound", min(10, self.args.concurrency), warm)
        rows = []
        for scenario in self.args.scenarios:
            for level in self.args.levels:
                row = self.run_closed(server, scenario, level, level_calls(self.args, level),
                                      per_command=server.name == "engine")
                rows.append(row)
                _progress(row)
        return rows

    def repeats(self, server: _proc.Server, first: dict[str, Any] | None) -> dict[str, Any]:
        """The bound-caller load at the throughput concurrency ``--repeat`` times: the
        spread of CPU per call on a shared machine (the first run is the load matrix's)."""
        a = self.args
        values = [first["cpu_ms_per_call"]] if first else []
        while len(values) < a.repeat:
            row = self.run_closed(server, "bound", a.concurrency, a.calls)
            _progress(row)
            values.append(row["cpu_ms_per_call"])
        ordered = sorted(values)
        return {"server": server.name, "runs": len(values), "cpu_ms_per_call": values,
                "min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}

    def paced(self, server: _proc.Server, scenario: str) -> dict[str, Any]:
        """Calls spread in time as Asterisk sends them: ``--paced-rate`` new calls per
        second for ``--paced-seconds``, each reply as late as Asterisk's (``PACE_S``)."""
        a = self.args
        pg0 = self._pg_cpu(server)
        results = self.drive(server, {"mode": "paced", "scenario": scenario, "rate": a.paced_rate,
                                      "duration_s": a.paced_seconds, "pace_scale": a.paced_scale,
                                      "timeout_s": 120.0 + 30 * a.paced_scale})
        pg = self._pg_cpu(server) - pg0
        merged = _merge(results)
        cpu = sum(r["server_cpu_s"] for r in results) / len(results)  # each driver saw the same process
        ok = max(1, merged["ok"])
        row = {"server": server.name, "scenario": scenario, "rate_per_s": a.paced_rate,
               "scale": a.paced_scale, "calls": merged["started"], "ok": merged["ok"],
               "failed": merged["failed"], "violations": merged["violations"],
               "wall_s": round(merged["wall_s"], 2), "cpu_s": round(cpu, 3),
               "cpu_ms_per_call": round(cpu / ok * 1000, 3), "command_rtt": distribution(merged["rtt_us"]),
               "setup": distribution(merged["setup_us"])}
        if self.pg_server is not None and server.name == "engine-pg":
            row["postgres_cpu_ms_per_call"] = round(pg / ok * 1000, 3)
        print(f"  paced {server.name:<10} {scenario:<9} {row['ok']:>5} ok {row['failed']:>3} failed"
              f"  {row['cpu_ms_per_call']:>7} ms CPU/call", file=sys.stderr)
        return row

    def hold(self, server: _proc.Server) -> dict[str, Any]:
        a = self.args
        results = self.drive(server, {"mode": "hold", "scenario": "bound", "parked": a.parked,
                                      "rate": a.hold_rate, "duration_s": a.hold_seconds,
                                      "timeout_s": 900.0, "park_concurrency": 200,
                                      "idle_s": 1.0 if a.quick else 3.0})
        r = results[0]
        new = _merge([x["new_calls"] for x in results])
        parked = sum(x["parked"] for x in results)
        mb = 1024 * 1024
        out = {
            "server": server.name, "parked": parked, "wanted": a.parked,
            "park_s": round(max(x["park_s"] for x in results), 3),
            "park_cpu_ms_per_call": round(r["park_cpu_s"] / max(1, parked) * 1000, 3),
            "rss_before_mb": round(r["rss_before"]["rss_bytes"] / mb, 1),
            "rss_parked_mb": round(r["rss_parked"]["rss_bytes"] / mb, 1),
            "rss_after_new_calls_mb": round(r["rss_after_new_calls"]["rss_bytes"] / mb, 1),
            "peak_rss_mb": round(r["rss_end"]["peak_rss_bytes"] / mb, 1),
            "kb_per_parked_call": round((r["rss_parked"]["rss_bytes"] - r["rss_before"]["rss_bytes"])
                                        / max(1, parked) / 1024, 1),
            "fds_parked": r["fds_parked"],
            "idle_cpu_percent_while_parked": round(r["idle_cpu_per_s"] * 100, 1),
            "new_calls": {"calls": new["started"], "ok": new["ok"], "failed": new["failed"],
                          "rate_per_s": a.hold_rate, "violations": new["violations"],
                          "setup": distribution(new["setup_us"]), "command_rtt": distribution(new["rtt_us"]),
                          "engine_cpu_ms_per_call":
                              round(r["new_calls"]["engine_cpu_s"] / max(1, new["ok"]) * 1000, 3)},
            "released": sum(x["released"] for x in results),
            "release_s": round(max(x["release_s"] for x in results), 3),
            "release_cpu_ms_per_call": round(r["release_cpu_s"] / max(1, parked) * 1000, 3),
            "parked_calls_ok": sum(x["parked_calls"]["ok"] for x in results),
            "parked_calls_failed": sum(x["parked_calls"]["failed"] for x in results),
            "parked_violations": [v for x in results for v in x["parked_calls"]["violations"]][:10],
            "park_setup": distribution([u for x in results for u in x["parked_calls"]["setup_us"]]),
        }
        print(f"  hold {server.name}: {parked} parked, RSS {out['rss_parked_mb']} MB,"
              f" new-call setup p99 {out['new_calls']['setup']['p99_ms']} ms", file=sys.stderr)
        return out

    def profile(self, server: _proc.Server) -> dict[str, Any]:
        out_path = self.workdir / "profile.txt"
        spy = _profile.record(server.pid, out_path, native=self.args.profile_native)
        time.sleep(1.0)
        try:
            row = self.run_closed(server, "bound", self.args.concurrency, self.args.calls)
        finally:
            spy.send_signal(2)
            _, err = spy.communicate(timeout=60)
        if not out_path.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
        summary = _profile.summarise(out_path.read_text())
        summary["cpu_ms_per_call_while_profiled"] = row["cpu_ms_per_call"]
        summary["raw"] = str(out_path)
        return summary

    def log_lines(self, server: _proc.Server, calls: int) -> dict[str, Any]:
        events: Counter[str] = Counter()
        lines = 0
        for line in server.log_path.read_text(errors="replace").splitlines():
            lines += 1
            if line.startswith("{"):
                try:
                    events[json.loads(line).get("event", "?")] += 1
                except ValueError:
                    events["(not json)"] += 1
        return {"lines": lines, "calls": calls, "lines_per_call": round(lines / max(1, calls), 2),
                "events": dict(events.most_common())}

    def run(self) -> dict[str, Any]:
        a = self.args
        started = time.time()
        soft, hard = _proc.raise_fd_limit(1 << 20)
        need = 2 * a.parked + 2000
        if soft < need:
            self.notes.append(f"file-descriptor limit {soft} (hard {hard}) is below the {need} the hold test"
                              " needs; some parked calls may fail")
        max_level = max(a.levels)
        paced_calls = 0 if a.no_paced else int(a.paced_rate * a.paced_seconds) + 10
        bound = max(a.parked + max(max_level, 100), paced_calls)
        print(f"preparing the database: {bound} bound cards, {max_level} PIN cards, {a.blacklist} blacklist"
              " entries", file=sys.stderr)
        self.plan = asyncio.run(prepare(self.workdir / "bench.sqlite3", bound=bound,
                                        pin_cards=max(max_level, paced_calls),
                                        blacklist=a.blacklist))
        (self.workdir / "plan.json").write_text(json.dumps(self.plan.to_json()))
        results: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "machine": _machine(), "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
            "fd_limit": [soft, hard], "targets": TARGETS,
            "database": {"bound_cards": len(self.plan.bound_callers), "pin_cards": len(self.plan.pins),
                         "blacklist_entries": self.plan.blacklist_entries, "project": self.plan.project,
                         "prepare_s": round(self.plan.seconds, 2)},
            "scenarios": {k: v[0] for k, v in SCENARIOS.items() if k in a.scenarios},
        }

        engine = self.start_engine("engine")
        servers = [engine]
        try:
            scripts, _ = asyncio.run(capture("127.0.0.1", engine.port, self.plan))
            self.engine_calls += len(scripts)
            self.scripts = scripts
            results["dialogue"] = {k: [s.key for s in v.steps] for k, v in scripts.items()}
            (self.workdir / "commands.json").write_text(json.dumps(
                {k: {"commands": v.commands} for k, v in scripts.items()}))
            print("engine: load matrix", file=sys.stderr)
            load = self.load_matrix(engine)
            if "bound" in a.scenarios:
                results["repeat"] = [self.repeats(engine, _row({"load": load}, "engine", "bound",
                                                               a.concurrency))]
            refs: list[_proc.Server] = []
            if not a.no_references:
                refs = [self.start_reference("bench.bare_server", "bare"),
                        self.start_reference("bench.panoramisk_server", "panoramisk")]
                servers += refs
                for ref in refs:
                    print(f"{ref.name}: load matrix", file=sys.stderr)
                    load += self.load_matrix(ref)
            results["load"] = load
            if not a.no_paced:
                print("paced load", file=sys.stderr)
                results["paced"] = [self.paced(engine, scenario) for scenario in a.scenarios]
                if refs:
                    results["paced"].append(self.paced(refs[0], a.scenarios[0]))
            results["hold"] = [self.hold(engine)] if a.parked else []
            if a.hold_references and a.parked:
                results["hold"] += [self.hold(ref) for ref in refs]
            for ref in refs:
                ref.stop()
            if a.profile:
                if _profile.py_spy() is None:
                    results["profile"] = {"skipped": "py-spy is not installed: pip install -e '.[bench]'"}
                else:
                    print("engine: profile (py-spy)", file=sys.stderr)
                    results["profile"] = self.profile(engine)
            engine.stop()
            results["logging"] = {"default": self.log_lines(engine, self.engine_calls)}
            if not a.no_log_compare:
                quiet = self.start_engine("engine-log-warning", {"IVR_LOG_LEVEL": "WARNING"})
                servers.append(quiet)
                before = self.engine_calls
                self.run_closed(quiet, "bound", min(10, a.concurrency), 10 if a.quick else 200)
                row = self.run_closed(quiet, "bound", a.concurrency, a.calls)
                quiet.stop()
                default_row = next(r for r in load if r["server"] == "engine" and r["scenario"] == "bound"
                                   and r["concurrency"] == a.concurrency)
                results["logging"]["warning"] = {
                    **self.log_lines(quiet, self.engine_calls - before),
                    "cpu_ms_per_call": row["cpu_ms_per_call"], "calls_per_s": row["calls_per_s"],
                    "default_cpu_ms_per_call": default_row["cpu_ms_per_call"],
                    "default_calls_per_s": default_row["calls_per_s"]}
        finally:
            for server in servers:
                server.stop()
        results["cdr_check"] = self.cdr_check()
        if a.postgresql:
            self.postgres_phase(results)
        if not a.no_store:
            print("store throughput", file=sys.stderr)
            results["store"] = asyncio.run(store_throughput(self.workdir / "store.sqlite3", cards=a.store_cards,
                                                            pairs=a.store_pairs))
        results["verdict"] = verdict(results, a)
        results["notes"] = [PANORAMISK_NOTE, *self.notes, *driver_notes(results)]
        results["seconds"] = round(time.time() - started, 1)
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return results

    def postgres_phase(self, results: dict[str, Any]) -> None:
        """The engine on PostgreSQL: the same database contents, the same dialogues (the
        SQLite engine's capture: the flow does not depend on the backend, and every
        driver checks each command), the load matrix, the repeats and the paced load."""
        a = self.args
        why = _postgres.available()
        if why is not None:
            results["postgresql"] = {"skipped": why}
            print(f"postgresql: skipped ({why})", file=sys.stderr)
            return
        sqlite_plan, sqlite_calls = self.plan, self.engine_calls
        assert sqlite_plan is not None
        self.pg_server = _postgres.start()
        engine: _proc.Server | None = None
        try:
            url = self.pg_server.create_database("bench")
            print("postgresql: preparing the database", file=sys.stderr)
            self.plan = asyncio.run(prepare(url, bound=len(sqlite_plan.bound_callers),
                                            pin_cards=len(sqlite_plan.pins), blacklist=a.blacklist,
                                            secret_path=self.workdir / "pg.secret"))
            self.engine_calls = 0
            engine = self.start_engine("engine-pg", {"IVR_SECRET_FILE": self.plan.secret_file,
                                                     "IVR_STATE_DIR": str(self.workdir / "pg.state")})
            print("engine-pg: load matrix", file=sys.stderr)
            load = self.load_matrix(engine)
            results["load"] += load
            if "bound" in a.scenarios:
                first = next((r for r in load if r["scenario"] == "bound" and r["concurrency"] == a.concurrency),
                             None)
                results.setdefault("repeat", []).append(self.repeats(engine, first))
            if not a.no_paced:
                results.setdefault("paced", []).append(self.paced(engine, a.scenarios[0]))
            engine.stop()
            results["postgresql"] = {"server": "tests/postgres.py PostgresServer (fsync=off,"
                                               " full_page_writes=off, loopback)",
                                     "cdr_check": asyncio.run(self._pg_cdr_check(url))}
        finally:
            if engine is not None:
                engine.stop()
            self.pg_server.destroy()
            self.plan, self.engine_calls = sqlite_plan, sqlite_calls

    async def _pg_cdr_check(self, url: str) -> dict[str, Any]:
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 - only with --postgresql

        conn = await asyncpg.connect(url)
        try:
            cdrs = await conn.fetchval("SELECT COUNT(*) FROM cdrs")
            open_holds = await conn.fetchval("SELECT COUNT(*) FROM reservations WHERE state = 'open'")
        finally:
            await conn.close()
        return {"calls_made": self.engine_calls, "cdrs": cdrs, "ok": cdrs == self.engine_calls,
                "open_reservations": open_holds}

    def cdr_check(self) -> dict[str, Any]:
        assert self.plan is not None
        with sqlite3.connect(self.plan.database) as db:
            cdrs = db.execute("SELECT COUNT(*) FROM cdrs").fetchone()[0]
            outcomes = dict(db.execute("SELECT outcome, COUNT(*) FROM cdrs GROUP BY outcome").fetchall())
            open_holds = db.execute("SELECT COUNT(*) FROM reservations WHERE state = 'open'").fetchone()[0]
        return {"calls_made": self.engine_calls, "cdrs": cdrs, "ok": cdrs == self.engine_calls,
                "outcomes": outcomes, "open_reservations": open_holds}


def _started(result: dict[str, Any]) -> int:
    if "new_calls" in result:
        return int(result["new_calls"]["started"]) + int(result["parked_calls"]["started"])
    return int(result["started"])


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"started": 0, "ok": 0, "failed": 0, "violations": [], "rtt_us": [], "setup_us": [],
                           "call_us": [], "rtt_by_command": {}, "wall_s": 0.0, "driver_cpu_s": 0.0}
    for r in results:
        for key in ("started", "ok", "failed", "driver_cpu_s"):
            out[key] += r.get(key, 0)
        out["wall_s"] = max(out["wall_s"], r.get("wall_s", 0.0))
        out["violations"] += r.get("violations", [])
        for key in ("rtt_us", "setup_us", "call_us"):
            out[key] += r.get(key, [])
        for name, values in r.get("rtt_by_command", {}).items():
            out["rtt_by_command"].setdefault(name, []).extend(values)
    out["violations"] = out["violations"][:20]
    return out


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "sqlite": sqlite3.sqlite_version,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def _row(results: dict[str, Any], server: str, scenario: str, level: int) -> dict[str, Any] | None:
    return next((r for r in results.get("load", []) if r["server"] == server and r["scenario"] == scenario
                 and r["concurrency"] == level), None)


def verdict(results: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    bound = _row(results, "engine", "bound", a.concurrency)
    if bound:
        cpu = bound["cpu_ms_per_call"]
        out["cpu_per_bound_call"] = {"value_ms": cpu, "target_ms": TARGETS["cpu_ms_per_bound_call"],
                                     "met": cpu <= TARGETS["cpu_ms_per_bound_call"]}
    pg = _row(results, "engine-pg", "bound", a.concurrency)
    if pg:
        target = TARGETS["cpu_ms_per_bound_call_postgresql"]
        out["cpu_per_bound_call_postgresql"] = {"value_ms": pg["cpu_ms_per_call"], "target_ms": target,
                                                "met": pg["cpu_ms_per_call"] <= target,
                                                "postgres_server_ms": pg.get("postgres_cpu_ms_per_call")}
    ratios: dict[str, Any] = {}
    for scenario in a.scenarios:
        eng = _row(results, "engine", scenario, a.concurrency)
        if not eng:
            continue
        ratios[scenario] = {}
        for ref in ("bare", "panoramisk"):
            other = _row(results, ref, scenario, a.concurrency)
            if other:
                ratios[scenario][ref] = {
                    "cpu_per_call": (round(eng["cpu_ms_per_call"] / other["cpu_ms_per_call"], 2)
                                     if other["cpu_ms_per_call"] > 0 else None),  # below the clock tick
                    "throughput": round(eng["calls_per_s"] / max(other["calls_per_s"], 1e-9), 3)}
    out["ratios"] = ratios
    if ratios and all("bare" in v for v in ratios.values()):
        out["throughput_vs_bare"] = {s: {"value": v["bare"]["throughput"], "target": TARGETS["throughput_vs_bare"],
                                         "met": v["bare"]["throughput"] >= TARGETS["throughput_vs_bare"]}
                                     for s, v in ratios.items()}
    hold = next((h for h in results.get("hold", []) if h["server"] == "engine"), None)
    if hold:
        rss = max(hold["rss_parked_mb"], hold["rss_after_new_calls_mb"])
        p99 = hold["new_calls"]["setup"]["p99_ms"]
        out["parked"] = {"parked": hold["parked"], "wanted": hold["wanted"], "rss_mb": rss,
                         "target_rss_mb": TARGETS["parked_rss_mb"], "new_call_setup_p99_ms": p99,
                         "target_p99_ms": TARGETS["parked_new_call_p99_ms"],
                         "met": hold["parked"] == hold["wanted"] and rss <= TARGETS["parked_rss_mb"]
                         and p99 <= TARGETS["parked_new_call_p99_ms"] and hold["new_calls"]["failed"] == 0}
    check = results.get("cdr_check", {})
    failed = sum(r["failed"] for r in [*results.get("load", []), *results.get("paced", [])])
    out["integrity"] = {"cdrs_equal_calls": check.get("ok", False), "failed_calls": failed,
                        "open_reservations": check.get("open_reservations")}
    return out


def driver_notes(results: dict[str, Any]) -> list[str]:
    notes = []
    busy = [r for r in results.get("load", []) if r["driver_utilisation"] >= 0.85 and r["concurrency"] > 1]
    if busy:
        names = sorted({f"{r['server']}/{r['scenario']}@{r['concurrency']}" for r in busy})
        notes.append("the driver process was near saturation (>= 85% of a core) in " + ", ".join(names)
                     + ": there the server's throughput is a lower bound (on 2 cores the server and the"
                     " driver share the machine); CPU per call is unaffected")
    return notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ivr-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, workdir)
    results = bench.run()
    results["workdir"] = str(workdir)
    output = args.output or RESULTS_DIR / (time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "") + ".json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, sort_keys=False))
    print(render(results))
    print(f"\nresults: {output}")
    return 0


def _progress(row: dict[str, Any]) -> None:
    print(f"  {row['server']:<10} {row['scenario']:<9} x{row['concurrency']:<4} {row['ok']:>6} ok"
          f" {row['failed']:>3} failed  {row['calls_per_s']:>8} calls/s  {row['cpu_ms_per_call']:>7} ms CPU/call",
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
