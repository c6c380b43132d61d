"""What the tests of `--network isolated` share: the skip where namespaces cannot be made,
and the guarantee that a test leaves `ip netns list` as it found it, also when it fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator

import pytest

from herd._cloud.network import isolated

NEEDS_NAMESPACES = pytest.mark.skipif(
    sys.platform != "linux"
    or os.geteuid() != 0
    or not all(shutil.which(tool) for tool in isolated.TOOLS),
    reason="network namespaces need Linux, root, ip, tc and nft",
)


@contextlib.contextmanager
def namespaces_kept() -> Iterator[list[str]]:
    """`ip netns list` before (sorted); on the way out, any herd namespace made since is
    removed."""
    before = sorted(isolated.namespaces())
    try:
        yield before
    finally:
        for name in set(isolated.namespaces()) - set(before):
            if name.startswith("herd-"):
                isolated.run(["ip", "netns", "del", name], check=False)
