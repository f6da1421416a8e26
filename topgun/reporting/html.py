"""Build the Allure HTML report from one or more results directories, offline.

Usage: ``python -m topgun.reporting.html RESULTS_DIR [RESULTS_DIR ...] -o reports/allure-report``.
Runs the Allure 3 command pinned in ``package-lock.json`` (``npx --no-install allure``) with
``allurerc.json`` (one self-contained ``index.html`` that opens from disk) on a staging copy
of the results: there every scenario is placed in the tree under its acceptance criterion,
whose name carries the verdict, and the verdict table, the traceability table,
``environment.properties`` and ``categories.json`` are added. The results directories
themselves are left as they are.
Allure's ``generate`` neither empties its output folder nor stops adding to its history, so
the folder is emptied first; the analytics script tag it embeds is removed afterwards, and
the table of criteria by implementation is put above Allure's page, so that it is the
first thing a reader of ``index.html`` sees.
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

from topgun.reporting import expectations, overview, traceability
from topgun.reporting.results import read_results
from topgun.reporting.verdicts import CriterionVerdict, implementations_of

CONFIG = Path(__file__).resolve().parents[2] / "allurerc.json"
"""Report settings (name, language, sort order); the grouping by criterion
(:data:`overview.TREE_LABELS`) and the single-file form are set here."""

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
    results = read_results(staging)
    props = {
        "Python": platform.python_version(),
        "Platform": platform.platform(terse=True),
        "Implementations": ", ".join(implementations_of(results)) or "none",
        "Cluster.nodes": str(nodes),
        "Partitions": "271",
    }
    text = "".join(f"{k}={v}\n" for k, v in props.items())
    (staging / "environment.properties").write_text(text, encoding="utf-8")
    (staging / "categories.json").write_text(json.dumps(CATEGORIES, indent=2), "utf-8")


def stage(results: Sequence[Path], staging: Path, nodes: int) -> list[CriterionVerdict]:
    """Copy the results into ``staging``, add the overview; return the verdicts."""
    for results_dir in results:
        for entry in results_dir.iterdir():
            if entry.is_file() and entry.name not in ("environment.properties", "categories.json"):
                shutil.copy2(entry, staging / entry.name)
    write_metadata(staging, nodes)
    verdicts = overview.label_tree(staging)
    overview.add_global_attachments(
        staging,
        [
            ("Acceptance criteria: verdicts", "text/html", overview.verdict_page(verdicts)),
            (
                "Traceability table (traceability.md)",
                "text/markdown",
                traceability.render(read_results(staging)),
            ),
        ],
    )
    return verdicts


def put_first(
    report_dir: Path, verdicts: Sequence[CriterionVerdict], notes: Sequence[str] = ()
) -> None:
    """Put the table of verdicts at the top of the report's page, above Allure's app."""
    page = report_dir / "index.html"
    text = page.read_text(encoding="utf-8")
    body = re.search(r"<body[^>]*>", text)
    if body is None:
        raise SystemExit(f"{page} has no <body>")
    first = overview.section(verdicts, notes)
    page.write_text(text[: body.end()] + first + text[body.end() :], encoding="utf-8")


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
    results: Sequence[Path],
    output: Path,
    *,
    nodes: int,
    name: str,
    multi_file: bool = False,
    notes: Sequence[str] = (),
) -> None:
    """Build the report; ``multi_file`` writes Allure's folder of data files instead of one
    page (for hosting on a web server: that form does not open from disk). ``notes`` go on
    the first page under the count per implementation."""
    if output.exists():
        shutil.rmtree(output)
    with tempfile.TemporaryDirectory(prefix="topgun-allure-") as tmp:
        staging = Path(tmp)
        verdicts = stage(results, staging, nodes)
        settings = json.loads(CONFIG.read_text(encoding="utf-8"))
        options = settings["plugins"]["awesome"]["options"]
        options["groupBy"] = list(overview.TREE_LABELS)
        options["singleFile"] = not multi_file
        config = staging / "allurerc.json"
        config.write_text(json.dumps(settings), encoding="utf-8")
        title = f"{name}: {overview.summary_line(verdicts)}"
        command = ["npx", "--no-install", "allure", "generate", str(staging)]
        command += ["--config", str(config), "-o", str(output), "--name", title]
        subprocess.run(command, check=True, timeout=600, stdout=subprocess.DEVNULL)
    strip_analytics(output)
    if not (output / "index.html").is_file():
        raise SystemExit(f"allure generate wrote no {output / 'index.html'}")
    put_first(output, verdicts, notes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/allure-report"))
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--name", default="TopGun acceptance (SPEC-048c)")
    parser.add_argument(
        "--multi-file", action="store_true", help="a folder of files to serve over HTTP"
    )
    parser.add_argument(
        "--expectation",
        action="append",
        type=Path,
        default=[],
        help="an expectation file: the first page says how its implementation compares",
    )
    args = parser.parse_args(argv)
    missing = [d for d in args.results if not d.is_dir()]
    if missing:
        print(f"no results directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    read = [r for d in args.results for r in read_results(d)]
    try:
        notes = [expectations.check(path, read).summary() for path in args.expectation]
    except (OSError, ValueError) as exc:
        print(f"cannot read the expectation file: {exc}", file=sys.stderr)
        return 2
    generate(
        args.results,
        args.output,
        nodes=args.nodes,
        name=args.name,
        multi_file=args.multi_file,
        notes=notes,
    )
    print(f"report: {args.output / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
