"""Turning acceptance-run results into what reviewers read: the Allure report and the
acceptance-criteria traceability table."""
