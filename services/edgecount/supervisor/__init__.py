"""The watchdog process and what it needs alone: the fork server, launching, reports, metrics, control."""
