"""The sections of the report model, one module each: a section's dataclasses next to the function that builds
them from the records. harness.reports.model assembles them into a Report."""
