import sys

from writeback.cli import main

sys.exit(main())
