"""The printed table: the results JSON for people."""

from __future__ import annotations

from typing import Any

__all__ = ["render"]


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for n, r in enumerate(cells):
        out.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("MET" if flag else "NOT MET")


def render(r: dict[str, Any]) -> str:
    o = r["options"]
    m = r["machine"]
    lines = [(f"ivr-prepaid engine benchmark — {r['started']}, {m['cpus']} cores ({m['cpu_model']}),"
             f" Python {m['python']}, SQLite {m['sqlite']}"),
             (f"database: {r['database']['bound_cards']} bound cards, {r['database']['pin_cards']} PIN cards,"
             f" {r['database']['blacklist_entries']} blacklist entries (prepared in {r['database']['prepare_s']} s)")]
    for name, text in r["scenarios"].items():
        lines.append(f"  {name:<9} {text}: {' > '.join(r.get('dialogue', {}).get(name, []))}")

    conc = o["concurrency"]
    lines += ["", (f"THROUGHPUT AND CPU PER CALL ({conc} concurrent calls, closed loop; CPU = the server"
              " process's user+sys time / calls)")]
    rows = []
    for row in r.get("load", []):
        if row["concurrency"] != conc:
            continue
        threads = row.get("threads_ms_per_call", {})
        split = " / ".join(f"{v}" for v in threads.values()) if row["server"] == "engine" else ""
        rows.append([row["server"], row["scenario"], row["ok"], row["failed"], row["calls_per_s"],
                     row["cpu_ms_per_call"], row.get("postgres_cpu_ms_per_call", ""), split,
                     row["driver_cpu_ms_per_call"], row["driver_utilisation"]])
    lines += _table(["server", "scenario", "calls", "failed", "calls/s", "CPU ms/call", "PostgreSQL ms/call",
                     "loop / sqlite thread ms", "driver ms/call", "driver util"], rows)
    for rep in r.get("repeat", []):
        if rep["runs"] > 1:
            lines.append(f"  {rep['server']} bound x{conc}, {rep['runs']} runs: CPU ms/call min {rep['min']},"
                         f" median {rep['median']}, max {rep['max']} ({', '.join(map(str, rep['cpu_ms_per_call']))})")
    paced = r.get("paced", [])
    if paced:
        p0 = paced[0]
        lines += ["", (f"PACED LOAD ({p0['rate_per_s']} new calls/s; each reply as late as Asterisk's, x{p0['scale']}:"
                  " ANSWER 0.5 s, Playback 3 s, GET DATA 5 s, Dial 7 s; CPU = the server's user+sys over the"
                  " whole run / calls)")]
        rows = [[x["server"], x["scenario"], x["ok"], x["failed"], x["wall_s"], x["cpu_ms_per_call"],
                 x.get("postgres_cpu_ms_per_call", ""), x["command_rtt"]["p50_ms"], x["command_rtt"]["p99_ms"]]
                for x in paced]
        lines += _table(["server", "scenario", "calls", "failed", "wall s", "CPU ms/call", "PostgreSQL ms/call",
                         "cmd p50", "cmd p99"], rows)
    ratios = r.get("verdict", {}).get("ratios", {})
    if ratios:
        lines += ["", "RATIOS (engine / reference; CPU per call: lower is better, throughput: higher is better)"]
        rows = []
        for scenario, refs in ratios.items():
            for ref, v in refs.items():
                cpu = "n/a (below the clock tick)" if v["cpu_per_call"] is None else f"{v['cpu_per_call']}x"
                rows.append([scenario, ref, cpu, f"{v['throughput']}x"])
        lines += _table(["scenario", "reference", "CPU/call ratio", "throughput ratio"], rows)

    lines += ["", ("LATENCY (peer side, ms): AGI command round trip = peer's write -> next command;"
              " setup = connect -> EXEC Dial (blocked: -> HANGUP)")]
    rows = []
    for row in r.get("load", []):
        c, s = row["command_rtt"], row["setup"]
        rows.append([row["server"], row["scenario"], row["concurrency"], row["ok"], row["calls_per_s"],
                     row["cpu_ms_per_call"], c["p50_ms"], c["p99_ms"], c["max_ms"], s["p50_ms"], s["p99_ms"],
                     s["max_ms"]])
    lines += _table(["server", "scenario", "conc", "calls", "calls/s", "CPU ms/call", "cmd p50", "cmd p99",
                     "cmd max", "setup p50", "setup p99", "setup max"], rows)

    one = next((x for x in r.get("load", []) if x["server"] == "engine" and x["concurrency"] == 1
                and x.get("per_command")), None)
    if one:
        lines += ["", ("ENGINE, ONE CALL AT A TIME: round trip before each command (the engine's think time,"
                  " e.g. the store work before ANSWER), ms")]
        for x in r.get("load", []):
            if x["server"] == "engine" and x["concurrency"] == 1 and x.get("per_command"):
                rows = [[x["scenario"], k, v["p50_ms"], v["p99_ms"], v["max_ms"]] for k, v in x["per_command"].items()]
                lines += _table(["scenario", "command", "p50", "p99", "max"], rows)

    for h in r.get("hold", []):
        n = h["new_calls"]
        lines += ["", (f"HOLDING POWER ({h['server']}): {h['parked']} of {h['wanted']} calls parked in Dial"
                  f" in {h['park_s']} s (setup p99 {h['park_setup']['p99_ms']} ms)")]
        lines += _table(["figure", "value"], [
            ["RSS before / parked / after new calls / peak (MB)",
             f"{h['rss_before_mb']} / {h['rss_parked_mb']} / {h['rss_after_new_calls_mb']} / {h['peak_rss_mb']}"],
            ["memory per parked call (KB)", h["kb_per_parked_call"]],
            ["open file descriptors while parked", h["fds_parked"]],
            ["CPU while parked and idle (% of a core)", h["idle_cpu_percent_while_parked"]],
            [f"new calls at {n['rate_per_s']}/s: ok / failed", f"{n['ok']} / {n['failed']}"],
            ["new-call setup p50 / p99 / max (ms)",
             f"{n['setup']['p50_ms']} / {n['setup']['p99_ms']} / {n['setup']['max_ms']}"],
            ["new-call command round trip p50 / p99 / max (ms)",
             f"{n['command_rtt']['p50_ms']} / {n['command_rtt']['p99_ms']} / {n['command_rtt']['max_ms']}"],
            ["CPU per call: parking / new / release (ms)",
             f"{h['park_cpu_ms_per_call']} / {n['engine_cpu_ms_per_call']} / {h['release_cpu_ms_per_call']}"],
            ["release of all parked calls (settle + CDR), s", h["release_s"]],
            ["parked calls ended ok / failed", f"{h['parked_calls_ok']} / {h['parked_calls_failed']}"],
        ])

    logging = r.get("logging", {})
    if logging:
        d = logging["default"]
        lines += ["", (f"LOGGING: {d['lines_per_call']} log lines per call with the default settings"
                  f" ({', '.join(f'{k} {v}' for k, v in list(d['events'].items())[:8])})")]
        w = logging.get("warning")
        if w:
            lines.append(f"  IVR_LOG_LEVEL=WARNING: {w['cpu_ms_per_call']} ms CPU/call, {w['calls_per_s']} calls/s"
                         f" (default: {w['default_cpu_ms_per_call']} ms, {w['default_calls_per_s']} calls/s),"
                         f" {w['lines_per_call']} lines per call")

    s = r.get("store")
    if s:
        lines += ["", (f"STORE THROUGHPUT (in-process SqliteStore, reserve+settle pairs; {s['cards_created']}"
                  f" cards created in {round(s['create_s'], 1)} s)")]
        rows = [[name, v["cards"], v["tasks"], v["pairs"], round(v["pairs_per_s"]), round(v["ops_per_s"])]
                for name, v in s.items() if isinstance(v, dict)]
        lines += _table(["test", "cards", "tasks", "pairs", "pairs/s", "ops/s"], rows)

    p = r.get("profile")
    if p:
        if "skipped" in p:
            lines += ["", f"PROFILE: skipped ({p['skipped']})"]
        else:
            lines += ["", (f"PROFILE (py-spy, bound callers, {p['samples']} samples; engine CPU/call while"
                      f" profiled {p['cpu_ms_per_call_while_profiled']} ms)")]
            lines += _table(["thread", "share"], [[x["name"], f"{x['share']:.1%}"] for x in p["threads"]])
            lines += _table(["area (inclusive)", "share"], [[x["name"], f"{x['share']:.1%}"] for x in p["areas"]])
            lines += _table(["function (self)", "share"], [[x["name"], f"{x['share']:.1%}"] for x in p["self"][:12]])

    v = r.get("verdict", {})
    lines += ["", "TARGETS"]
    rows = []
    if "cpu_per_bound_call" in v:
        c = v["cpu_per_bound_call"]
        rows.append([f"engine CPU <= {c['target_ms']} ms per bound-caller call", f"{c['value_ms']} ms", _met(c["met"])])
    if "cpu_per_bound_call_postgresql" in v:
        c = v["cpu_per_bound_call_postgresql"]
        rows.append([f"engine CPU <= {c['target_ms']} ms per bound-caller call (PostgreSQL)",
                     f"{c['value_ms']} ms", _met(c["met"])])
    for scenario, t in v.get("throughput_vs_bare", {}).items():
        rows.append([f"throughput >= {t['target']}x bare ({scenario})", f"{t['value']}x", _met(t["met"])])
    if "parked" in v:
        pk = v["parked"]
        rows.append([(f"{pk['wanted']} parked calls in <= {pk['target_rss_mb']} MB, new-call p99 <="
                     f" {pk['target_p99_ms']} ms"), (f"{pk['parked']} parked, {pk['rss_mb']} MB,"
                     f" p99 {pk['new_call_setup_p99_ms']} ms"), _met(pk["met"])])
    i = v.get("integrity", {})
    c = r.get("cdr_check", {})
    rows.append(["every engine call left a CDR", f"{c.get('cdrs')} CDRs / {c.get('calls_made')} calls",
                 _met(i.get("cdrs_equal_calls"))])
    pc = r.get("postgresql", {}).get("cdr_check")
    if pc:
        rows.append(["every engine-pg call left a CDR, no open holds",
                     f"{pc['cdrs']} CDRs / {pc['calls_made']} calls, {pc['open_reservations']} open",
                     _met(pc["ok"] and pc["open_reservations"] == 0)])
    elif "skipped" in r.get("postgresql", {}):
        rows.append(["engine on PostgreSQL", f"skipped: {r['postgresql']['skipped']}", "n/a"])
    rows.append(["no failed calls, no open reservations", (f"{i.get('failed_calls')} failed,"
                 f" {i.get('open_reservations')} open"), _met(i.get("failed_calls") == 0
                                                              and i.get("open_reservations") == 0)])
    lines += _table(["target", "measured", "verdict"], rows)
    if r.get("notes"):
        lines += ["", "NOTES"] + [f"- {n}" for n in r["notes"]]
    lines.append(f"\nworkdir (database, logs, profile): {r.get('workdir', '?')}; run took {r.get('seconds')} s")
    return "\n".join(lines)
