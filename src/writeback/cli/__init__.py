"""The `writeback` command line: argparse and formatting; each verb one library call."""

from writeback.cli.main import main

__all__ = ["main"]
