"""One JSON report per submission, and its self-contained HTML view."""

from .html import render_html, write_reports
from .schema import ERROR_KINDS, SCHEMA_VERSION, item_problems, validate_report

__all__ = ["SCHEMA_VERSION", "ERROR_KINDS", "validate_report", "item_problems", "render_html",
           "write_reports"]
