"""Confinement of student kernels: bubblewrap, rlimits, timeouts. Knows nothing of points."""

from .bwrap import WORK_DIR, Limits, SandboxSpec, build_command, check_sandbox, find_bwrap
from .kernel import KernelSession

__all__ = ["WORK_DIR", "Limits", "SandboxSpec", "KernelSession", "build_command",
           "check_sandbox", "find_bwrap"]
