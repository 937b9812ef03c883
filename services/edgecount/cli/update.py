"""``edgecount update``: the technician's software update, and the boot-time trial of a new slot.

Exit codes: 0 installed (or the slot kept), 1 rauc failed while installing
(the running slot is untouched) or the trial failed, 2 the bundle was refused
(nothing written), 3 this system has no A/B slots.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgecount.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    config_path,
    err,
    out,
    with_progress,
)
from edgecount.runtime.settings import load_config

EXIT_NO_SLOTS = EXIT_NOT_RUNNING


def cmd_update(args: argparse.Namespace) -> int:
    from edgecount.supervisor.slots import NoSlots, SlotError
    from edgecount.tools.update import BundleError, install, trial

    cfg = load_config(config_path(args))
    try:
        if args.bundle == "trial":
            verdict = trial(cfg)
            result: dict[str, Any] = {"decision": verdict.decision, "reason": verdict.reason}
            out.print(json.dumps(result) if args.json else f"{verdict.decision}: {verdict.reason}")
            return EXIT_OK if verdict.decision == "good" else EXIT_FAILED

        def work(progress: Any) -> Any:
            def step(percent: int, what: str) -> None:
                if progress is not None:
                    progress(percent, 100, what)
            return install(cfg, args.bundle, step)

        info = with_progress("update", args.json, work, unit="%")
    except BundleError as exc:
        return _fail(args, "refused", str(exc), EXIT_USAGE)
    except NoSlots as exc:
        return _fail(args, "no_slots", str(exc), EXIT_NO_SLOTS)
    except SlotError as exc:
        return _fail(args, "install_failed", str(exc), EXIT_FAILED)
    if args.json:
        out.print(json.dumps({"result": "installed", "version": info.version, "blocks_checked": info.blocks_checked}))
    else:
        out.print(f"installed {info.version} into the other slot ({info.blocks_checked} blocks checked); reboot "
                  "to run it: it is kept once it proves itself, else the device returns to this version")
    return EXIT_OK


def _fail(args: argparse.Namespace, result: str, why: str, code: int) -> int:
    if args.json:
        out.print(json.dumps({"result": result, "error": why}))
    else:
        err.print(f"[red]{result.replace('_', ' ')}[/]: {why}")
    return code


def register(sub: Any) -> None:
    """Add ``update`` to the ``edgecount`` parser."""
    u = sub.add_parser("update", help="install a signed update bundle into the other slot (A/B)",
                       description="BUNDLE is a path (a USB stick's mount point too) or an https:// URL. It is "
                       "checked whole first (signature, this device, every block); nothing is written unless "
                       "it passes. `edgecount update trial` is what the boot-time unit runs: it keeps a new "
                       "slot once the appliance is healthy, or reboots.")
    u.add_argument("bundle", help="the .raucb file or https:// URL (or `trial`)")
    u.add_argument("--config", "-c")
    u.add_argument("--json", action="store_true")
    u.set_defaults(func=cmd_update)
