"""`python -m vqa`: the same as the `vqa` command."""

import sys

from .cli import main

sys.exit(main())
