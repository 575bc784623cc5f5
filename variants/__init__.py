"""One folder per stage of the series: ``vNN_short_name``. See common/registry.py."""
