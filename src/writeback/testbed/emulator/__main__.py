"""``python -m writeback.testbed.emulator serve --tenant FILE --port PORT --data-dir DIR``."""

from __future__ import annotations

import sys

from writeback.testbed.emulator.server import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
