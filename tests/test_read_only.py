"""Saving into a directory the filesystem really refuses to write, as root or not.

Root ignores a directory's permission bits, so ``chmod 555`` proves nothing
on machines that run tests as root (CI here does). As root the test mounts a
read-only tmpfs inside a private mount namespace (``unshare -m``), so nothing
is left mounted on the machine whatever happens; as any other user the
permission bits are enough. Either way the save is refused by the kernel, not
by a monkeypatch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import json, os, subprocess, sys
    import chainrule as cr

    folder, as_root = sys.argv[1], sys.argv[2] == "1"
    if as_root:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "none", folder], check=True)
    path = os.path.join(folder, "m.safetensors")
    cr.Network.from_sizes([3, 2], seed=0).save(path)
    before = open(path, "rb").read()
    if as_root:
        subprocess.run(["mount", "-o", "remount,ro", folder], check=True)
    else:
        os.chmod(folder, 0o555)
    try:
        cr.Network.from_sizes([3, 2], seed=1).save(path)
        outcome = {"raised": None}
    except OSError as error:
        outcome = {"raised": type(error).__name__, "errno": error.errno, "message": str(error)}
    finally:
        if not as_root:
            os.chmod(folder, 0o755)
    outcome["unchanged"] = open(path, "rb").read() == before
    outcome["leftovers"] = sorted(set(os.listdir(folder)) - {"m.safetensors"})
    print(json.dumps(outcome))
    """
)


def _command(folder: str) -> list[str]:
    if os.geteuid() != 0:
        return [sys.executable, "-c", CHILD, folder, "0"]
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.fail("running as root needs unshare and mount (util-linux) for this test")
    return ["unshare", "-m", "--propagation", "private", sys.executable, "-c", CHILD, folder, "1"]


def test_saving_into_a_read_only_directory_is_refused_and_keeps_the_old_file(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    done = subprocess.run(_command(str(folder)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["raised"] in ("PermissionError", "OSError")
    assert outcome["errno"] in (13, 30)  # EACCES (permission bits) or EROFS (read-only mount)
    assert "could not save model to" in outcome["message"]
    assert "previous file" in outcome["message"]
    assert outcome["unchanged"] is True
    assert outcome["leftovers"] == []
