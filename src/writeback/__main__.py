import sys

from writeback.cli.main import main

sys.exit(main())
