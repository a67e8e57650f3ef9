"""Which container pylb itself runs in, if any.

Owns: reading the evidence a container leaves in a process (``/proc/self/
cgroup`` on cgroup v1, ``/proc/self/mountinfo`` on any cgroup version, the
``HOSTNAME`` Docker sets to the short id) and turning it into candidate
container ids, strongest first.
Must not know: the Docker API (the caller inspects the candidates and keeps the
first that exists), trio, logging.

Invariants: ``candidates`` is pure; ``read_evidence`` never raises (a missing
file is no evidence). A hostname is only a candidate when it looks like a short
container id; the caller must check that the container's own ``Config.Hostname``
matches before believing it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

_ID = r"[0-9a-f]{64}"
_CGROUP = re.compile(rf"(?:docker[/-]|/containers?/|libpod-|cri-containerd-)({_ID})")
_MOUNT = re.compile(rf"/containers/({_ID})/(?:hostname|hosts|resolv\.conf)")
_SHORT = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class Evidence:
    cgroup: str = ""
    mountinfo: str = ""
    hostname: str = ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A container id (or its 12-character prefix, when ``by_hostname``)."""

    ident: str
    by_hostname: bool = False


def candidates(evidence: Evidence) -> tuple[Candidate, ...]:
    """Possible ids of pylb's container, strongest evidence first, no repeats."""
    found: dict[str, Candidate] = {}
    for match in _MOUNT.finditer(evidence.mountinfo):
        found.setdefault(match[1], Candidate(match[1]))
    for match in _CGROUP.finditer(evidence.cgroup):
        found.setdefault(match[1], Candidate(match[1]))
    hostname = evidence.hostname.strip()
    if _SHORT.fullmatch(hostname) and not any(ident.startswith(hostname) for ident in found):
        found[hostname] = Candidate(hostname, by_hostname=True)
    return tuple(found.values())


def matches(candidate: Candidate, attrs: Mapping[str, object], hostname: str) -> bool:
    """Whether inspect data ``attrs`` is the container ``candidate`` points at."""
    ident = str(attrs.get("Id") or "")
    if not ident.startswith(candidate.ident):
        return False
    if not candidate.by_hostname:
        return True
    config = attrs.get("Config")
    return isinstance(config, Mapping) and config.get("Hostname") == hostname.strip()


def read_evidence(environ: Mapping[str, str] | None = None) -> Evidence:
    """What this process can see of its container (empty strings when nothing)."""
    environ = os.environ if environ is None else environ
    return Evidence(_read("/proc/self/cgroup"), _read("/proc/self/mountinfo"), environ.get("HOSTNAME", ""))


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read(1 << 20)
    except OSError:
        return ""
