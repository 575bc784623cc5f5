"""Shared pieces of the series: the stage registry, input checks, the float64 reference,
the error budget used by the tests, and GPU timing helpers."""
