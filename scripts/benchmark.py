"""Compare combiners and strategies on accuracy, uncertainty and cost (see ``--help``)."""

import sys

from ensembles.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
