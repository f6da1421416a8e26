"""``python -m topgun.reporting.junit_summary DIR [--extra-failed N]``: one
``N passed, N failed`` line for all JUnit XML files under DIR (pytest's and behave's), the
line CI tooling reads.

Errors count as failed; skipped tests are reported apart and count as neither.
``--extra-failed`` adds checks that write no JUnit file (lint, types, report building).
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path


def totals(directory: Path) -> tuple[int, int, int]:
    passed = failed = skipped = 0
    for path in sorted(directory.rglob("*.xml")):
        root = ET.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        for suite in suites:
            tests = int(suite.get("tests", 0))
            bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skip = int(suite.get("skipped", 0))
            passed += tests - bad - skip
            failed += bad
            skipped += skip
    return passed, failed, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sum JUnit XML results into one line.")
    parser.add_argument("directory", nargs="?", type=Path, default=Path("reports/junit"))
    parser.add_argument("--extra-failed", type=int, default=0)
    args = parser.parse_args(argv)
    passed, failed, skipped = totals(args.directory)
    print(f"{passed} passed, {failed + args.extra_failed} failed, {skipped} skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
