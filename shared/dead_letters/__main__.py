"""``python -m shared.dead_letters list|requeue``: the dead-letter tool (see the package doc)."""

import sys

from shared.dead_letters.cli import main, parse_args
from shared.logs import configure_logging
from shared.settings import BaseServiceSettings

args = parse_args(sys.argv[1:])
settings = BaseServiceSettings()
configure_logging("dead-letters", settings.log_level, settings.log_format)
sys.exit(main(settings, args))
