"""Reports: report.json, records.jsonl, per-metric JSON, report.html, compare tables."""
