"""num_cpu(): the CPUs this process may use (Go's getproccount + cgroup limits, Go 1.25)."""

import math
import os


def _affinity():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def cgroup_cpu_limit(root="/sys/fs/cgroup", proc_self="/proc/self/cgroup"):
    """The CPU quota of this process's cgroup as a float number of CPUs, or None.

    cgroup v2: ``cpu.max`` is ``"<quota> <period>"`` or ``"max <period>"``.
    cgroup v1: ``cpu.cfs_quota_us`` (-1 = none) over ``cpu.cfs_period_us``.
    The process's own cgroup path (from /proc/self/cgroup) is tried first, then
    the root (inside a container the root is the container's cgroup)."""
    rel2, rel1 = "", ""
    text = _read(proc_self)
    if text:
        for line in text.splitlines():
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            if parts[0] == "0" and parts[1] == "":
                rel2 = parts[2]
            elif "cpu" in parts[1].split(","):
                rel1 = parts[2]
    limits = []
    for d in {os.path.join(root, rel2.lstrip("/")), root}:
        v = _read(os.path.join(d, "cpu.max"))
        if v:
            fields = v.split()
            if len(fields) >= 1 and fields[0] != "max":
                try:
                    quota = float(fields[0])
                    period = float(fields[1]) if len(fields) > 1 else 100000.0
                    if quota > 0 and period > 0:
                        limits.append(quota / period)
                except ValueError:
                    pass
    for base in (os.path.join(root, "cpu"), os.path.join(root, "cpu,cpuacct"), root):
        for d in {os.path.join(base, rel1.lstrip("/")), base}:
            q = _read(os.path.join(d, "cpu.cfs_quota_us"))
            per = _read(os.path.join(d, "cpu.cfs_period_us"))
            if q and per:
                try:
                    quota, period = float(q), float(per)
                except ValueError:
                    continue
                if quota > 0 and period > 0:
                    limits.append(quota / period)
    return min(limits) if limits else None


def num_cpu(root="/sys/fs/cgroup", proc_self="/proc/self/cgroup"):
    n = _affinity()
    lim = cgroup_cpu_limit(root, proc_self)
    if lim is not None:
        n = min(n, max(1, math.ceil(lim)))
    return max(1, n)
