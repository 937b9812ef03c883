"""Tests of one stage or one of its parts at a time: capture pacing, counter state, privacy, outbox, sinks."""
