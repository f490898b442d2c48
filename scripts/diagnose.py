"""Diagnose learning, generalization and prediction problems of a setup (see ``--help``)."""

import sys

from ensembles.cli.diagnose import main

if __name__ == "__main__":
    sys.exit(main())
