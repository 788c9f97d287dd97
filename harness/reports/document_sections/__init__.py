"""The report's sections as neutral document sections (harness.reports.document), one module each: every word and number
both reports show is chosen there; harness.reports.report_document lists them in order."""
