"""The files a notebook wrote in its work dir, read back as bytes (``grader build --checkpoints``).

The trainer runs a solution or example notebook with ``TRAIN = True`` in the sandbox; the
checkpoints it saves stay in the kernel's private work dir. This instrument hands one back as
a uint8 tensor through the protocol (bounded like every reply); the grader then checks it with
``torch.load(weights_only=True)`` before storing it, never trusting what came back.
"""

import os

import torch

__all__ = ["file_bytes"]


def file_bytes(name, limit):
    """The bytes of ``name`` (a plain file in the work dir, at most ``limit`` bytes)."""
    name, limit = str(name), int(limit)
    if os.path.basename(name) != name or name.startswith(".") or not os.path.isfile(name):
        raise ValueError(f"{name!r}: not a file the notebook wrote in its work dir")
    size = os.path.getsize(name)
    if size > limit:
        raise ValueError(f"{name}: {size} bytes, over the limit of {limit}")
    with open(name, "rb") as handle:
        data = handle.read(limit + 1)
    if not data:
        return torch.zeros(0, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()
