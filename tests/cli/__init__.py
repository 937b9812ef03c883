"""Tests of the technician's commands, parsed and rendered, some in a real terminal."""
