"""HTML RTO reports: ``build_report(run_dirs or a drill result, out_dir) -> path of report.html`` (with report.json
and junit.xml beside it)."""
from reports.build import build_report, collect_run_checks, write_junit

__all__ = ["build_report", "collect_run_checks", "write_junit"]
