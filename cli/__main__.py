"""`python -m cli`: the `river` command."""

import sys

from cli.main import main

sys.exit(main())
