"""workhorse's benchmark: ``python -m bench`` (or ``make bench``).

It measures enqueue rates, processing rates, run() round trips, and the worker's CPU and
memory per job on every backend that is installed and reachable, and writes the figures
to ``docs/benchmarks.md`` and ``bench/results/latest.json``. Figures are measurements,
never assertions: no test times anything.
"""
