"""``python -m shared``: the Tributary command line."""

from shared.cli import main

raise SystemExit(main())
