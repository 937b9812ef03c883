"""Tests of the watchdog and the fork server, with real child processes."""
