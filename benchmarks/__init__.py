"""writeback's benchmarks: ``bench`` (scripts/bench), ``rules_eval`` and ``emulator_scale``.

A package so that the CI smoke test (tests/integration/test_bench_smoke.py) runs the same code as
``scripts/bench``.
"""
