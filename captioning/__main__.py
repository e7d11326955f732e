"""`python -m captioning`: the same as the `captioning` command."""

import sys

from .cli import main

sys.exit(main())
