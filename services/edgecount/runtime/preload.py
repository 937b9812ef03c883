"""Imported last by the stages' fork server: freeze what is loaded so the stages keep sharing it.

The garbage collector would otherwise walk (and so write to) every object the server imported, in
every forked stage, turning shared pages private. ``gc.freeze()`` moves them out of its reach.
"""

from __future__ import annotations

import gc

gc.collect()
gc.freeze()
