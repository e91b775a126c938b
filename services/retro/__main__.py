"""Run the retro worker: ``python -m services.retro``."""

import sys

from services.retro.main import main

sys.exit(main())
