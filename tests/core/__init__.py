"""Tests of the pure domain logic in libs/edgecount_core: no process, no file, time passed in."""
