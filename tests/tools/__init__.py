"""Tests of the work behind CLI commands: eval, sweep, doctor, preview, logs, record and replay."""
