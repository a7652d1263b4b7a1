"""What a tritonserver started by PyTriton leaves on the machine, found from /proc, and its removal.

A tritonserver that exits cleanly stops its Python-backend stubs, unlinks their shared-memory regions
(``/dev/shm/<prefix>*``, the prefix is on its command line) and removes the model folders it
localized (``/tmp/folderXXXXXX``, on each stub's command line). One that crashes or is killed leaves
them all: the stubs and their helper processes are re-parented and keep running. :class:`ServerTree`
records them while the server runs, from the server's process tree, so that :meth:`ServerTree.sweep`
can remove exactly those (never another server's) after PyTriton's stop has returned.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

_SHM = Path("/dev/shm")
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux): a stub whose tritonserver died is re-parented to this
    process instead of init, so it stays in this process's tree and can be stopped. False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time in clock ticks) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            parents[int(entry)] = st[0]
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@dataclass
class ServerTree:
    """The processes, shared-memory prefix and temporary folders of one tritonserver."""

    processes: dict[int, int] = field(default_factory=dict)  # pid -> start time (guards against pid reuse)
    servers: set[int] = field(default_factory=set)  # PyTriton's own children: it waits for them
    shm_prefix: str | None = None
    folders: set[Path] = field(default_factory=set)

    def record(self, parent: int) -> None:
        """Add the tritonserver below ``parent`` (this process) and everything it has started so far."""
        servers = [p for p in descendants(parent) if Path((_cmdline(p) or ["?"])[0]).name == "tritonserver"]
        self.servers.update(servers)
        for server in servers:
            for arg in _cmdline(server):
                if arg.startswith("python,shm-region-prefix-name="):
                    self.shm_prefix = arg.split("=", 1)[1]
            for pid in {server} | descendants(server):
                st, argv = _stat(pid), _cmdline(pid)
                if st is None:
                    continue
                self.processes[pid] = st[2]
                # a stub's first argument is the model.py Triton copied into the folder it localized,
                # a "folderXXXXXX" made in the temporary directory
                if argv and Path(argv[0]).name == "triton_python_backend_stub" and len(argv) > 1:
                    model_py = Path(argv[1])
                    folder = next((a for a in model_py.parents if a.name.startswith("folder")), None)
                    if folder is not None and folder.parent in (Path(tempfile.gettempdir()), Path("/tmp")):
                        self.folders.add(folder)

    def alive(self) -> list[int]:
        """The recorded processes still running (zombies and reused pids excluded)."""
        live = []
        for pid, started in self.processes.items():
            st = _stat(pid)
            if st is not None and st[2] == started and st[1] != "Z":
                live.append(pid)
        return live

    def sweep(self, grace_s: float = 3.0) -> dict[str, int]:
        """Stop the recorded processes still running (SIGTERM, SIGKILL after ``grace_s``) and remove the
        server's shared memory and folders; returns how many of each were left behind."""
        left = stopped = self.alive()
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while (left := self.alive()) and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.05)
            if not left:
                break
        self._reap()
        shm = sorted(_SHM.glob(f"{self.shm_prefix}*")) if self.shm_prefix else []
        for region in shm:
            region.unlink(missing_ok=True)
        folders = [f for f in self.folders if f.exists()]
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        return {"processes": len(stopped), "shared_memory": len(shm), "folders": len(folders)}

    def _reap(self) -> None:
        """Collect recorded processes this process adopted as subreaper (they would stay zombies);
        only those: another child's exit status belongs to whoever started it."""
        for pid in set(self.processes) - self.servers:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
