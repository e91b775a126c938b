"""Run the analytics service: ``python -m services.analytics``."""

import sys

from services.analytics.main import main

sys.exit(main())
