"""The UCI regression protocol: Boston and Concrete, 20 random 90/10 splits (see ``--help``).

python scripts/bench_uci.py [--datasets boston concrete] [--splits 20] [--members 5]
                            [--jobs 1] [--before] [--cache DIR] [--output uci.md]
"""

import sys

from ensembles.cli.bench_uci import main

if __name__ == "__main__":
    sys.exit(main())
