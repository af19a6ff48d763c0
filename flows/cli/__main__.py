"""`python -m flows.cli`: the `webtext` command."""

import sys

from flows.cli import main

sys.exit(main())
