"""Stage 6, report: figures, Markdown and self-contained HTML reports."""
