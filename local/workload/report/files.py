"""The report's files: `<stem>.json` and `<stem>.html` side by side, written together so they never disagree."""

from pathlib import Path

from local.workload.report import html
from local.workload.report.json_codec import to_json
from local.workload.report.model import RunReport


def write(report: RunReport, directory: Path, stem: str = "report") -> tuple[Path, Path]:
    """Write the JSON and the HTML page into `directory` (created if missing); return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / f"{stem}.json", directory / f"{stem}.html"
    json_path.write_text(to_json(report))
    html_path.write_text(html.render(report))
    return json_path, html_path
