"""Tests of what every process shares: the bus, the frame ring, stores, imports per process."""
