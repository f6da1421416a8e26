"""``python -m topgun`` is the ``topgun`` command."""

from topgun.cli import main

raise SystemExit(main())
