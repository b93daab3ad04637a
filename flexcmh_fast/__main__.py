"""``python -m flexcmh_fast`` / ``flexcmh-fast``: demo and experiment CLI."""
import sys

from .experiments._cli import main

if __name__ == "__main__":
    sys.exit(main())
