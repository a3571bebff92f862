"""Prometheus metrics (STYLE §7): prefix ``ivr_``, base units, ``_total`` counters,
no per-call labels. Built on an injected registry; no module-level singletons."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rating.store.base import PoolStats

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, *, version: str = "0") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.connections_active = Gauge("ivr_agi_connections_active", "FastAGI connections open now", registry=r)
        self.connections = Counter("ivr_agi_connections_total", "FastAGI connections accepted", registry=r)
        self.command_duration = Histogram("ivr_agi_command_duration_seconds",
                                          "Round trip of one AGI command", ["command"],
                                          buckets=_LATENCY_BUCKETS, registry=r)
        self.protocol_errors = Counter("ivr_agi_protocol_errors_total", "AGI protocol errors", ["side"],
                                       registry=r)
        self.calls = Counter("ivr_calls_total", "Calls finished", ["flow", "outcome"], registry=r)
        self.debited_seconds = Counter("ivr_debited_seconds_total", "Card seconds debited", registry=r)
        self.pin_failures = Counter("ivr_pin_failures_total", "Wrong PINs entered (empty entries are none)",
                                    registry=r)
        self.pin_throttled = Counter("ivr_pin_throttled_total", "Calls refused PIN entry by the throttle",
                                     ["reason"], registry=r)  # line | project | busy
        self.peers_refused = Counter("ivr_agi_peers_refused_total",
                                     "FastAGI connections closed at once: peer not in allowed_peers", registry=r)
        self.connections_refused = Counter("ivr_agi_connections_refused_total",
                                           "FastAGI connections closed at once: max_connections reached",
                                           registry=r)
        self.store_duration = Histogram("ivr_store_operation_duration_seconds", "Store write transactions",
                                        ["operation"], buckets=_LATENCY_BUCKETS, registry=r)
        self.store_failures = Counter("ivr_store_failures_total", "Store operations that failed (unavailable)",
                                      ["operation"], registry=r)
        self.store_up = Gauge("ivr_store_up", "1 while the store answers, 0 from a failure until it answers again",
                              registry=r)
        self.journal_entries = Gauge("ivr_journal_entries", "Calls journalled, not yet in the store", registry=r)
        self.journal_oldest_age = Gauge("ivr_journal_oldest_age_seconds",
                                        "Age of the oldest call waiting in the journal (0: none)", registry=r)
        self.journal_replayed = Counter("ivr_journal_replayed_total", "Journal entries written to the store",
                                        registry=r)
        self.journal_write_failures = Counter("ivr_journal_write_failures_total",
                                              "Calls the journal could not keep either (kept in memory, logged)",
                                              registry=r)
        self.call_faults = Counter("ivr_call_faults_total", "Calls ended by an engine fault", registry=r)
        self.calls_live = Gauge("ivr_calls_live", "Calls holding card time whose channel Asterisk has up"
                                " (AMI reconciliation)", registry=r)
        self.holds_open = Gauge("ivr_holds_open", "Holds of card time not settled yet, all engines", registry=r)
        self.holds_reconciled = Counter("ivr_holds_reconciled_total", "Holds settled by reconciliation: from"
                                        " the facts Asterisk kept (astdb) or by the estimation policy (estimated)",
                                        ["how"], registry=r)
        self.ami_up = Gauge("ivr_ami_up", "1 while the AMI connection is logged in", registry=r)
        Info("ivr_build", "Engine build", registry=r).info({"version": version})

        # The labelled children, kept: ``labels()`` takes a lock and builds a key each time,
        # several times per call (bench/, py-spy); the label values are a short, fixed list.
        self._commands: dict[str, Any] = {}
        self._operations: dict[str, Any] = {}

    def watch_store(self, stats: Callable[[], PoolStats | None]) -> None:
        """Export the store's connection pool at every scrape (nothing for SQLite: no pool)."""
        self.registry.register(_PoolCollector(stats))

    def observe_command(self, command: str, seconds: float, reply: object) -> None:
        child = self._commands.get(command)
        if child is None:
            child = self._commands[command] = self.command_duration.labels(command)
        child.observe(seconds)

    def observe_store(self, operation: str, seconds: float) -> None:
        child = self._operations.get(operation)
        if child is None:
            child = self._operations[operation] = self.store_duration.labels(operation)
        child.observe(seconds)


class _PoolCollector(Collector):
    """``ivr_store_pool_*`` and the pool's counters, read from the store when scraped."""

    def __init__(self, stats: Callable[[], PoolStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        if s is None:
            return
        connections = GaugeMetricFamily("ivr_store_pool_connections", "Store connections open now, by state",
                                        labels=["state"])
        connections.add_metric(["idle"], s.idle)
        connections.add_metric(["in_use"], s.open - s.idle)
        yield connections
        yield GaugeMetricFamily("ivr_store_pool_max_connections", "The most store connections the pool opens",
                                value=s.max)
        yield CounterMetricFamily("ivr_store_connections_opened", "Store connections opened (reconnects too)",
                                  value=s.opened)
        yield CounterMetricFamily("ivr_store_timeouts", "Store operations cut at store_budget_ms: no answer in"
                                  " time (the connection is dropped)", value=s.overruns)
