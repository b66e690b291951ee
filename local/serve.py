"""`make local` (`python -m local.serve`): the ride API over HTTP, the pipeline behind it (emulators/http_api.py)."""

import sys

from local.emulators.http_api import main

if __name__ == "__main__":
    sys.exit(main())
