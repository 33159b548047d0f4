"""``python -m worker.cli``: the same as the ``order-worker`` command."""

import sys

from worker.cli import main

sys.exit(main())
