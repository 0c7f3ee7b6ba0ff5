"""``python -m visrep``: the ``visrep`` command line (see :mod:`visrep.commands`)."""
import sys

from visrep.commands import main

if __name__ == "__main__":
    sys.exit(main())
