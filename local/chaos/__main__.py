"""`make chaos` (`python -m local.chaos`): see local/chaos/runner.py."""

import sys

from local.chaos.runner import main

sys.exit(main())
