"""Reports of a check: report.json (the data), report.md, report.html (self-contained), junit.xml."""
