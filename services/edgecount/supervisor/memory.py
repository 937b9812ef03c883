"""How much memory the appliance takes: PSS per process, from ``/proc/<pid>/smaps_rollup``.

PSS (proportional set size) splits every shared page between the processes that map it, so the sum
over the supervisor, its fork server and the services counts each page once: the appliance's real cost
on a 1 GB board.
"""

from __future__ import annotations

from pathlib import Path


def smaps_mb(pid: int) -> dict[str, float]:
    """``{"pss": MB, "rss": MB}`` of the process; empty if it is gone or not readable."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, value = line.split(":", 1)
            if key in ("Pss", "Rss"):
                out[key.lower()] = round(int(value.split()[0]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return {}
    return out


def pss_mb(pid: int) -> float | None:
    """The process's PSS in MB, or None if it is gone or not readable."""
    return smaps_mb(pid).get("pss")


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (the fork server and what it forked, for instance)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out: list[int] = []
    frontier = {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier}
        out += sorted(frontier)
    return out


def total_pss_mb(root: int) -> float:
    """PSS of ``root`` and all its descendants."""
    return round(sum(v for p in [root, *descendants(root)] if (v := pss_mb(p)) is not None), 1)


def oom_kills(pid: int | None = None) -> int | None:
    """How many processes the kernel's out-of-memory killer took in this process's memory cgroup (under
    systemd: the whole unit), or ``None`` where the kernel does not say. A stage that died of SIGKILL while
    this went up was killed for memory, not by a person."""
    try:
        groups = Path(f"/proc/{pid or 'self'}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in groups:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            counters = Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.events"
        elif "memory" in controllers.split(","):  # cgroup v1
            counters = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.oom_control"
        else:
            continue
        try:
            for entry in counters.read_text().splitlines():
                key, _, value = entry.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None
