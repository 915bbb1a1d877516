"""``python -m sagas.cli``: the ``sagas`` command."""

import sys

from sagas.cli import main

sys.exit(main())
