"""Verify a model store and list (or remove) what killed publishes left (see ``--help``)."""

import sys

from ensembles.cli.store import main

if __name__ == "__main__":
    sys.exit(main())
