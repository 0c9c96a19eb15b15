"""``python -m tlsearch``: the ``tlsearch`` command (:mod:`tlsearch.cli.main`)."""

import sys

from tlsearch.cli.main import main

sys.exit(main())
