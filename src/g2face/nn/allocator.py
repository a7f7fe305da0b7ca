"""glibc's malloc, tuned for PyTorch on a CPU.

By default glibc gives freed memory at the top of its heap back to the kernel once 128 KiB are free
(M_TRIM_THRESHOLD) and grows the heap in small steps (M_TOP_PAD), so every forward pass that frees
and reallocates hundreds of MB of activations faults all of those pages in again. On this project's
2-core machine the kernel time exceeded the arithmetic: MobileStyleGAN → 256 px took 531 ms per
image (10 images: 6.5 s user, 7.1 s sys); keeping up to 1 GiB free and growing in 1 GiB steps,
159 ms (sys 0.5 s). The price: the process keeps up to 1 GiB of freed memory for reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_TOP_PAD = -2
KEEP_BYTES = 1 << 30
OPT_OUT = "G2FACE_MALLOC"  # "system": leave malloc as it is


def tune_cpu_allocator() -> bool:
    """Apply the settings above to this process (glibc on Linux only); True when applied. Safe to
    call more than once; the environment variable G2FACE_MALLOC=system turns it off."""
    if os.environ.get(OPT_OUT, "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    # mallopt returns 1 on success (glibc); other C libraries may lack the options and return 0
    return mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1 and mallopt(M_TOP_PAD, KEEP_BYTES) == 1
