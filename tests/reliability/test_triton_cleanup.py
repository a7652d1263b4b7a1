"""What a crashed tritonserver leaves is found and removed (issue 22, #3), on a stand-in process tree.

The real crash (``Signal (11)`` at the end of the exit timeout) no longer happens under
``dnx triton serve``'s drain, so the cleanup it needs is tested on processes shaped like Triton's: a
``tritonserver`` whose command line names its shared-memory prefix, and a
``triton_python_backend_stub`` running ``/tmp/folderXXXXXX/1/model.py`` that ignores SIGTERM (as the
orphaned stubs did) and has a child of its own. The server is SIGKILLed, the stub is orphaned; the
sweep must stop both, unlink the shared memory and remove the folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dnx.runtime.serve.triton_process import ServerTree

SERVER = """
import subprocess, sys, time
stub = subprocess.Popen(["triton_python_backend_stub", sys.argv[1]], executable="/bin/sh")
open("/dev/shm/" + sys.argv[2] + "_model_0", "wb").write(b"x" * 64)
time.sleep(300)
"""


@pytest.mark.skipif(not Path("/dev/shm").is_dir() or not Path("/proc").is_dir(),
                    reason="needs Linux /proc and /dev/shm")
def test_sweep_stops_orphans_and_removes_shm_and_folders():
    prefix = f"dnxtest{os.getpid()}-{time.monotonic_ns() % 10**6}"
    folder = Path(tempfile.mkdtemp(prefix="folder", dir="/tmp"))
    (folder / "1").mkdir()
    model_py = folder / "1" / "model.py"
    model_py.write_text("trap '' TERM\nsleep 300\n")  # the stand-in stub: ignores SIGTERM, like the orphans did
    server = subprocess.Popen(["tritonserver", "-c", SERVER, str(model_py), prefix,
                               f"python,shm-region-prefix-name={prefix}"], executable=sys.executable)
    try:
        tree = ServerTree()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until the stub's own child (sleep) has started
            tree.record(os.getpid())
            if len(tree.processes) >= 3 and list(Path("/dev/shm").glob(f"{prefix}*")):
                break
            time.sleep(0.1)
        assert server.pid in tree.processes and len(tree.processes) >= 3, tree
        assert tree.shm_prefix == prefix and tree.folders == {folder}
        server.kill()  # the crash: its stub is orphaned and keeps running
        server.wait()
        time.sleep(0.3)
        orphans = tree.alive()
        assert orphans and all(int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) != server.pid
                               for p in orphans)
        left = tree.sweep(grace_s=1.0)
        assert left["processes"] == len(orphans) and left["shared_memory"] == 1 and left["folders"] == 1
        assert tree.alive() == []
        assert not list(Path("/dev/shm").glob(f"{prefix}*")) and not folder.exists()
        assert tree.sweep() == {"processes": 0, "shared_memory": 0, "folders": 0}  # idempotent
    finally:
        for pid in tree.alive() if "tree" in locals() else []:
            os.kill(pid, signal.SIGKILL)
        if server.poll() is None:
            server.kill()
            server.wait()
        for region in Path("/dev/shm").glob(f"{prefix}*"):
            region.unlink()
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
