"""Allow `python -m newstag`."""

from newstag.cli import main

raise SystemExit(main())
