"""Train an ensemble and publish it to the model store (see ``--help``)."""

import sys

from ensembles.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
