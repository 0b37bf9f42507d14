"""``python -m tornado_chat``: the same as the ``tornado-chat`` command."""

import sys

from .cli import main

sys.exit(main())
