"""`make report-screenshot`: a run's report page as headless Chromium draws it, saved as a PNG beside it.

By default the page `make demo` wrote last (.local/report.html). With `--chaos FILE`, the page of a chaos
run is first made from the JSON `make chaos` wrote (its hops, designs, checks and faults), then drawn.
"""

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from local.aws.stack import STATE_DIR
from local.workload.report import html
from local.workload.report.chaos_file import from_chaos_json
from local.workload.report.screenshot import ChromiumMissingError, screenshot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make report-screenshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", type=Path, default=STATE_DIR / "report.html", help="the page (default the demo's)")
    parser.add_argument("--chaos", type=Path, help="make the page from this `make chaos --json` file first")
    parser.add_argument("--png", type=Path, help="where the screenshot goes (default: the page's name, .png)")
    args = parser.parse_args(argv)
    page: Path = args.page
    if args.chaos is not None:
        try:
            finished = datetime.fromtimestamp(args.chaos.stat().st_mtime, UTC)
            report = from_chaos_json(json.loads(args.chaos.read_text()), finished_at=finished)
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"--chaos {args.chaos}: not a file `make chaos --json` wrote ({error!r})")
        page = args.chaos.with_suffix(".html")
        page.write_text(html.render(report))
    if not page.exists():
        print(f"no report page at {page}: run `make demo` first", file=sys.stderr)
        return 2
    try:
        png = screenshot(page, args.png or page.with_suffix(".png"))
    except ChromiumMissingError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"{page} drawn by Chromium: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
