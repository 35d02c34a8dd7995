"""Faults: a process killed mid-save, a full disk, a read-only directory, wrong widths.

The kill test trains in a child process that writes a checkpoint after every
epoch and kills it with SIGKILL at random moments, many times (every other
kill waits until a write is under way); after every
kill the file on disk must load (old or new checkpoint), and at the end the
weights must equal those of a run that was never interrupted.
"""

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import chainrule as cr
from chainrule import io as cr_io
from chainrule.checkpoint import load_checkpoint, save_checkpoint

KILL_ROUNDS = int(os.environ.get("CHAINRULE_KILL_ROUNDS", "60"))

# A "zygote": imports chainrule once, then forks one training child per round,
# so a round costs milliseconds rather than an interpreter start-up. The child
# resumes from the checkpoint and writes a new one after every epoch, forever,
# until the test kills it.
ZYGOTE = r"""
import os, sys, traceback
import numpy as np
import chainrule as cr

path = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.random((16, 64)).astype(np.float32)
y = rng.integers(0, 10, 16)

def train(epochs, **kwargs):
    # ~180k parameters plus Adam's moments: a ~2 MB file, so writes take a while.
    net = cr.Network.from_sizes([64, 384, 384, 10], activation="relu", loss=cr.CrossEntropy(),
                                optimizer=cr.Adam(lr=1e-3), dropout=0.1, seed=1)
    net.fit(x, y, epochs=epochs, batch_size=16, seed=2, verbose=0, **kwargs)
    return net

train(1, checkpoint=path)
print("ready", flush=True)
for line in sys.stdin:
    command = line.split()
    if command[0] == "go":
        pid = os.fork()
        if pid == 0:
            try:
                train(10**9, checkpoint=path, resume=path)
            except BaseException:
                traceback.print_exc()
            os._exit(3)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)
    elif command[0] == "check":
        epochs = int(command[1])
        straight = train(epochs).parameters()
        saved = cr.checkpoint.load_checkpoint(path).parameters
        same = all(np.array_equal(straight[k], saved[k]) for k in straight)
        print("same" if same else "different", flush=True)
        break
"""


def temp_files(directory):
    return [name for name in os.listdir(directory) if name.endswith(".part")]


def wait_for_temp_file(directory, pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(f".{pid}." in name for name in temp_files(directory)):
            return
        time.sleep(0.0005)


def test_sigkill_during_checkpoint_writes_never_leaves_a_corrupt_file(tmp_path):
    path = tmp_path / "train.ckpt.safetensors"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    zygote = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE, str(path)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    watchdog = threading.Timer(240, zygote.kill)  # a hang fails the test instead of blocking CI
    watchdog.start()
    rng = np.random.default_rng(12345)
    epochs_seen, killed_mid_write = [], 0
    try:
        assert zygote.stdout.readline().strip() == "ready", zygote.stderr.read()
        for round_ in range(KILL_ROUNDS):
            zygote.stdin.write("go\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            if round_ % 2:
                # Any moment: building, resuming, training or writing.
                time.sleep(rng.uniform(0.03, 0.12))
            else:
                # A moment inside a write: once the child's temporary file exists.
                wait_for_temp_file(tmp_path, pid, timeout=5.0)
                time.sleep(rng.uniform(0.0, 0.004))
            os.kill(pid, signal.SIGKILL)
            status = int(zygote.stdout.readline())
            # It must have died by our hand, not from an error of its own.
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
                zygote.stderr.read() if not os.WIFSIGNALED(status) else status
            )
            leftovers = temp_files(tmp_path)
            killed_mid_write += any(f".{pid}." in name for name in leftovers)
            # Stale temporary files of dead writers are removed by the next save.
            assert len(leftovers) <= 1, leftovers
            saved = load_checkpoint(path)  # the old checkpoint or the new one, never half
            assert saved.step == 0
            assert not epochs_seen or saved.epoch >= epochs_seen[-1]
            epochs_seen.append(saved.epoch)
        zygote.stdin.write(f"check {epochs_seen[-1]}\n")
        zygote.stdin.flush()
        verdict = zygote.stdout.readline().strip()
    finally:
        watchdog.cancel()
        zygote.kill()
        zygote.wait()
        for pipe in (zygote.stdin, zygote.stdout, zygote.stderr):
            pipe.close()
    print(f"{KILL_ROUNDS} kills, {killed_mid_write} during a write, "
          f"{epochs_seen[-1]} epochs in the checkpoint")
    # Kills interrupted the run many times, yet it equals an uninterrupted one.
    assert verdict == "same"
    assert epochs_seen[-1] > epochs_seen[0]
    # The random delays must really have hit writes, or the test proves nothing.
    assert killed_mid_write >= KILL_ROUNDS // 5


# -- full disk, read-only directory ------------------------------------------------------


@pytest.fixture
def saved_model(tmp_path):
    net = cr.Network.from_sizes([6, 5, 3], seed=0)
    path = tmp_path / "model.safetensors"
    net.save(path)
    return net, path, path.read_bytes()


def disk_full_after_half(fd, data):
    os.write(fd, memoryview(data)[: len(data) // 2])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def refuse(error_number):
    def open_temp(*args, **kwargs):
        raise OSError(error_number, os.strerror(error_number))

    return open_temp


def fail_at_fsync(fd):
    raise OSError(errno.EIO, os.strerror(errno.EIO))


@pytest.mark.parametrize("target, fault, error_number, says", [
    ("_write_all", disk_full_after_half, errno.ENOSPC, "No space left on device .the disk is full."),
    ("_open_temp", refuse(errno.EROFS), errno.EROFS, "Read-only file system .the directory is not"),
    ("_open_temp", refuse(errno.EACCES), errno.EACCES, "Permission denied .the directory is not"),
    ("fsync", fail_at_fsync, errno.EIO, "Input/output error"),
])
def test_failed_save_is_a_clear_error_and_keeps_the_previous_file(
    monkeypatch, tmp_path, saved_model, target, fault, error_number, says
):
    net, path, before = saved_model
    owner = {"_write_all": cr_io, "_open_temp": cr_io, "fsync": os}[target]
    monkeypatch.setattr(owner, target, fault)
    newer = cr.Network.from_sizes([6, 5, 3], seed=1)
    with pytest.raises(OSError) as info:
        newer.save(path)
    assert info.value.errno == error_number
    assert str(info.value).startswith(f"[Errno {error_number}] could not save model to {path}: ")
    assert info.value.strerror.endswith("the previous file was left unchanged")
    assert re.search(says, str(info.value))
    if error_number == errno.EACCES:
        assert isinstance(info.value, PermissionError)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert temp_files(tmp_path) == []
    np.testing.assert_array_equal(cr.load(path).predict(np.ones((2, 6))), net.predict(np.ones((2, 6))))


def test_full_disk_during_fit_stops_training_and_keeps_the_last_checkpoint(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 6)), rng.integers(0, 3, 40)
    net = cr.Network.from_sizes([6, 5, 3], loss=cr.CrossEntropy(), seed=0)
    path = tmp_path / "c.safetensors"
    net.fit(x, y, epochs=2, checkpoint=path, verbose=0)
    before = path.read_bytes()
    monkeypatch.setattr(cr_io, "_write_all", disk_full_after_half)
    with pytest.raises(OSError, match=f"could not save checkpoint to {path}: No space left"):
        net.fit(x, y, epochs=4, checkpoint=path, resume=path, verbose=0)
    assert path.read_bytes() == before
    assert load_checkpoint(path).epoch == 2


def test_stale_temporary_files_of_dead_writers_are_cleaned_and_ignored(tmp_path):
    net = cr.Network.from_sizes([3, 2], seed=0)
    path = tmp_path / "m.safetensors"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".m.safetensors.{dead_pid}.abc123.part"
    stale.write_bytes(b"half a model")
    alive = tmp_path / f".m.safetensors.{os.getppid()}.xyz789.part"  # a live writer's
    alive.write_bytes(b"in progress")
    other = tmp_path / f".other.safetensors.{dead_pid}.abc123.part"  # another target's
    other.write_bytes(b"not ours")
    # A live writer holds a lock on its temporary file (chainrule.io); a dead one's lock is gone.
    fcntl = pytest.importorskip("fcntl")
    fd = os.open(alive, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        net.save(path)
    finally:
        os.close(fd)
    assert not stale.exists()
    assert alive.exists() and other.exists()
    assert isinstance(cr.load(path), cr.Network)


def test_checkpoint_save_errors_name_the_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setattr(cr_io, "_open_temp", refuse(errno.EROFS))
    with pytest.raises(OSError, match="could not save checkpoint to .*nothing was written"):
        save_checkpoint(tmp_path / "c.safetensors", cr.Network.from_sizes([2, 2]), epoch=0)


# -- nothing silently wrong ------------------------------------------------------------


def test_predicting_on_data_of_the_wrong_width_names_both_widths():
    net = cr.Network.from_sizes([784, 16, 10], seed=0)
    with pytest.raises(ValueError, match=r"\(batch, 784\).*got shape \(5, 28\)"):
        net.predict(np.zeros((5, 28)))
    with pytest.raises(ValueError, match=r"784.*\(28,\)"):
        net.predict(np.zeros(28))
