"""`python -m wasmlab.runtime.zygote`: the zygote process, as ZygoteClient starts it."""

import sys

from wasmlab.runtime.zygote.server import serve_main

sys.exit(serve_main())
