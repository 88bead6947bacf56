"""`python -m timestep` runs the `timestep` command."""

import sys

from .cli import main

sys.exit(main())
