"""``scripts/bench``: writeback's end-to-end benchmark against a real Samba AD DC and the Graph emulator.

Public API::

    SIZES: dict[str, Size]                      # small, medium, large
    run_bench(size, info, workdir, options=Options(), progress=None) -> dict   # one run, all scenarios
    report.write_all(out_dir, result) -> str    # JSON + Markdown + PNG, accumulated per size

See docs/benchmarks.md for what each figure means and how it is measured.
"""

from benchmarks.bench.runner import Options, run_bench
from benchmarks.bench.sizes import SIZES, Size

__all__ = ["SIZES", "Options", "Size", "run_bench"]
