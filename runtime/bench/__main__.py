"""`python -m wasmlab.runtime.bench`: the bench without the lab's charts."""

import sys

from wasmlab.runtime.bench import main

sys.exit(main())
