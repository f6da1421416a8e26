"""``python -m topgun.reporting.mark RESULTS_DIR MODE``: stamp a run's results with its mode."""

from __future__ import annotations

import sys
from pathlib import Path

from topgun.reporting.results import mark_cluster_mode


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    count = mark_cluster_mode(Path(args[0]), args[1])
    print(f"marked {count} results in {args[0]} as cluster={args[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
