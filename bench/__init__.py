"""The engine benchmark: ``python -m bench`` (``make bench``), ``--quick`` for a smoke run.

Measured on a real Asterisk 22 on 2 cores, Asterisk spends 7–11 ms of CPU per simple
IVR call and saturates near 130 call setups per second; this package shows what the
engine costs next to that, and next to two references doing the same AGI dialogue:

* the engine runs as a real process (``ivr --database FILE serve --port P
  --metrics-port 0``) on a real SQLite file prepared through ``ivr.operations``;
* ``bare_server`` is a bare asyncio FastAGI server with no store (the floor for this
  protocol in Python), ``panoramisk_server`` is panoramisk's FastAGI ``Application``;
* ``_driver`` is the load, run as separate processes: light Asterisk peers replaying,
  word for word, the dialogue the fake Asterisk (``asterisk_sim``) had with the
  engine on one call of each scenario (``_workload``);
* CPU is each server process's own user+sys time from ``/proc/<pid>/stat``.

Scenarios: (a) a bound caller — announcement, Dial answered, settle, CDR; (b) a first
call with PIN entry and binding; (c) a blocked caller. Phases: throughput and CPU per
call at ``--concurrency`` (50), latency at ``--levels`` (1, 50, 500 concurrent calls),
``--parked`` (5,000) calls held in Dial while new calls arrive, the engine with
``IVR_LOG_LEVEL=WARNING``, a py-spy profile (``pip install -e '.[bench]'``), and store
throughput in-process. Results: a table on stdout, JSON in ``bench/results/``.
"""
