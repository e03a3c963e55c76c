"""`python -m wasmlab.lab.cli`: the wasmlab command."""

import sys

from wasmlab.lab.cli import main

sys.exit(main())
