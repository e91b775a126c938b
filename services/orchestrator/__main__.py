"""Run the orchestrator: ``python -m services.orchestrator``."""

import sys

from services.orchestrator.main import main

sys.exit(main())
