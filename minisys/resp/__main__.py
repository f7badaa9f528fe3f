"""`python -m minisys.resp`: run the tiny RESP demo server (see demo.py)."""

import sys

from minisys.resp.demo import main

sys.exit(main())
