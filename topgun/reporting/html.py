"""Build the Allure HTML report from one or more results directories, offline.

Usage: ``python -m topgun.reporting.html RESULTS_DIR [RESULTS_DIR ...] -o reports/allure-report``.
Runs the Allure 3 command pinned in ``package-lock.json`` (``npx --no-install allure``) with
``allurerc.json``, after adding ``environment.properties`` and ``categories.json`` to each
results directory.
Allure's ``generate`` neither empties its output folder nor stops adding to its history, so
the folder is emptied first; the analytics script tag it embeds is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from topgun.reporting.results import read_results

CONFIG = Path(__file__).resolve().parents[2] / "allurerc.json"
"""Report settings: grouped epic → feature → story (acceptance criterion)."""

CATEGORIES = [
    {
        "name": "Wait ran out (the system was too slow or never got there)",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": ".*(not reached within|gave up after|Timeout).*",
    },
    {
        "name": "Product defect (an expectation did not hold)",
        "matchedStatuses": ["failed"],
    },
    {
        "name": "Harness or test defect (the step itself broke)",
        "matchedStatuses": ["broken"],
    },
]

_ANALYTICS = re.compile(
    r"<script[^>]*(googletagmanager|google-analytics|gtag)[^>]*>.*?</script>"
    r"|<script[^>]*>[^<]*(gtag\(|dataLayer)[^<]*</script>",
    re.DOTALL | re.IGNORECASE,
)


def write_metadata(results: Sequence[Path], nodes: int) -> None:
    """The same environment and categories in every results directory of one report."""
    modes = sorted({r.cluster for d in results for r in read_results(d) if r.cluster})
    props = {
        "Python": platform.python_version(),
        "Platform": platform.platform(terse=True),
        "Cluster.mode": ", ".join(modes) or "embedded",
        "Cluster.nodes": str(nodes),
        "Partitions": "271",
    }
    text = "".join(f"{k}={v}\n" for k, v in props.items())
    for results_dir in results:
        (results_dir / "environment.properties").write_text(text, encoding="utf-8")
        (results_dir / "categories.json").write_text(json.dumps(CATEGORIES, indent=2), "utf-8")


def strip_analytics(report_dir: Path) -> int:
    stripped = 0
    for page in report_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        cleaned, n = _ANALYTICS.subn("", text)
        if n:
            page.write_text(cleaned, encoding="utf-8")
            stripped += n
    return stripped


def generate(results: Sequence[Path], output: Path, *, nodes: int, name: str) -> None:
    write_metadata(results, nodes)
    if output.exists():
        shutil.rmtree(output)
    command = ["npx", "--no-install", "allure", "generate", *map(str, results)]
    command += ["--config", str(CONFIG), "-o", str(output), "--name", name]
    subprocess.run(command, check=True, timeout=600)
    strip_analytics(output)
    if not (output / "index.html").is_file():
        raise SystemExit(f"allure generate wrote no {output / 'index.html'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/allure-report"))
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--name", default="TopGun acceptance (SPEC-048c)")
    args = parser.parse_args(argv)
    missing = [d for d in args.results if not d.is_dir()]
    if missing:
        print(f"no results directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    generate(args.results, args.output, nodes=args.nodes, name=args.name)
    print(f"report: {args.output / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
