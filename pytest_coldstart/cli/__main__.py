"""``python -m pytest_coldstart.cli``: the ``coldstart`` command."""

import sys

from pytest_coldstart.cli import main

sys.exit(main())
