"""Build the Allure HTML report from one or more results directories, offline.

Usage: ``python -m topgun.reporting.html RESULTS_DIR [RESULTS_DIR ...] -o reports/allure-report``.
Runs the Allure 3 command pinned in ``package-lock.json`` (``npx --no-install allure``) with
``allurerc.json`` (one self-contained ``index.html`` that opens from disk) on a staging copy
of the results: there every scenario is placed in the tree under its acceptance criterion,
whose name carries the verdict, and the verdict table, the traceability table,
``environment.properties`` and ``categories.json`` are added. The results directories
themselves are left as they are.
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
import tempfile
from collections.abc import Sequence
from pathlib import Path

from topgun.reporting import overview, traceability
from topgun.reporting.results import read_results

CONFIG = Path(__file__).resolve().parents[2] / "allurerc.json"
"""Report settings: one file, grouped by criterion (:data:`overview.TREE_LABELS`)."""

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
    r'<script[^>]*\bsrc="https?://[^"]*(?:googletagmanager|google-analytics)[^"]*"[^>]*>\s*</script>'
    r"|<script>[^<]*(?:\bgtag\(|window\.dataLayer)[^<]*</script>",
    re.IGNORECASE,
)
"""The analytics tags Allure embeds, and nothing else: in a single-file report the app
itself is a ``data:`` URL whose base64 may spell ``gtag`` by chance, so both forms are
pinned to what the tags look like (an https source; an inline script without ``<``)."""


def write_metadata(staging: Path, nodes: int) -> None:
    """The environment and the failure categories of the report."""
    modes = sorted({r.cluster for r in read_results(staging) if r.cluster})
    props = {
        "Python": platform.python_version(),
        "Platform": platform.platform(terse=True),
        "Cluster.mode": ", ".join(modes) or "embedded",
        "Cluster.nodes": str(nodes),
        "Partitions": "271",
    }
    text = "".join(f"{k}={v}\n" for k, v in props.items())
    (staging / "environment.properties").write_text(text, encoding="utf-8")
    (staging / "categories.json").write_text(json.dumps(CATEGORIES, indent=2), "utf-8")


def stage(results: Sequence[Path], staging: Path, nodes: int) -> str:
    """Copy the results into ``staging``, add the overview; return the report's subtitle."""
    for results_dir in results:
        for entry in results_dir.iterdir():
            if entry.is_file() and entry.name not in ("environment.properties", "categories.json"):
                shutil.copy2(entry, staging / entry.name)
    write_metadata(staging, nodes)
    verdicts = overview.label_tree(staging)
    table, _ = traceability.render(read_results(staging))
    overview.add_global_attachments(
        staging,
        [
            ("Acceptance criteria: verdicts", "text/html", overview.verdict_page(verdicts)),
            ("Traceability table (traceability.md)", "text/markdown", table),
        ],
    )
    return overview.summary_line(verdicts)


def strip_analytics(report_dir: Path) -> int:
    stripped = 0
    for page in report_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        cleaned, n = _ANALYTICS.subn("", text)
        if n:
            page.write_text(cleaned, encoding="utf-8")
            stripped += n
    return stripped


def generate(
    results: Sequence[Path], output: Path, *, nodes: int, name: str, multi_file: bool = False
) -> None:
    """Build the report; ``multi_file`` writes Allure's folder of data files instead of one
    page (for hosting on a web server: that form does not open from disk)."""
    if output.exists():
        shutil.rmtree(output)
    with tempfile.TemporaryDirectory(prefix="topgun-allure-") as tmp:
        staging = Path(tmp)
        subtitle = stage(results, staging, nodes)
        config = CONFIG
        if multi_file:
            settings = json.loads(CONFIG.read_text(encoding="utf-8"))
            settings["plugins"]["awesome"]["options"]["singleFile"] = False
            config = staging / "allurerc.json"
            config.write_text(json.dumps(settings), encoding="utf-8")
        command = ["npx", "--no-install", "allure", "generate", str(staging)]
        command += ["--config", str(config), "-o", str(output), "--name", f"{name}: {subtitle}"]
        subprocess.run(command, check=True, timeout=600, stdout=subprocess.DEVNULL)
    strip_analytics(output)
    if not (output / "index.html").is_file():
        raise SystemExit(f"allure generate wrote no {output / 'index.html'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/allure-report"))
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--name", default="TopGun acceptance (SPEC-048c)")
    parser.add_argument(
        "--multi-file", action="store_true", help="a folder of files to serve over HTTP"
    )
    args = parser.parse_args(argv)
    missing = [d for d in args.results if not d.is_dir()]
    if missing:
        print(f"no results directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    generate(
        args.results, args.output, nodes=args.nodes, name=args.name, multi_file=args.multi_file
    )
    print(f"report: {args.output / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
