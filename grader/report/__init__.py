"""One JSON report per submission, and its self-contained HTML view."""

from .html import render_html, write_reports
from .schema import SCHEMA_VERSION, validate_report

__all__ = ["SCHEMA_VERSION", "validate_report", "render_html", "write_reports"]
