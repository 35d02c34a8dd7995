"""Checkpoints: a resumed run is bit-identical to an uninterrupted one."""

import errno
import json
import os

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

import chainrule as cr
from chainrule.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    checkpoint_lock,
    load_checkpoint,
    save_checkpoint,
)
from chainrule.io import tensor_digest

OPTIMIZERS = {
    "adam": lambda: cr.Adam(lr=2e-3),
    "nesterov": lambda: cr.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.random((96, 64)).astype(np.float32)
    y = rng.integers(0, 5, 96)
    return x, y


def make_net(optimizer="adam"):
    # Dropout draws from its own generator at every step, so the test also
    # covers per-layer generator state.
    return cr.Network.from_sizes([64, 24, 16, 5], activation="relu", loss=cr.CrossEntropy(),
                                 optimizer=OPTIMIZERS[optimizer](), dropout=0.25, seed=3)


def shift_and_noise(x, rng):
    """A stand-in augmentation that draws from fit's generator."""
    return np.roll(x, int(rng.integers(-2, 3)), axis=1) + rng.normal(0, 0.01, x.shape)


def run(data, epochs, optimizer="adam", **kwargs):
    x, y = data
    net = make_net(optimizer)
    history = net.fit(x, y, epochs=epochs, batch_size=16, seed=7, verbose=0,
                      augment=shift_and_noise, validation_data=(x[:20], y[:20]), **kwargs)
    return net, history


def assert_same_weights(a, b):
    pa, pb = a.parameters(), b.parameters()
    assert pa.keys() == pb.keys()
    for name in pa:
        assert np.array_equal(pa[name], pb[name]), name


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_four_epochs_equal_two_plus_resume_plus_two_exactly(tmp_path, data, optimizer):
    path = tmp_path / "run.ckpt.safetensors"
    straight, straight_history = run(data, 4, optimizer)
    first, _ = run(data, 2, optimizer, checkpoint=path)
    # A fresh process would build the network again from scratch (different
    # weights, fresh optimizer); resume must restore everything that matters.
    resumed, history = run(data, 4, optimizer, resume=path, checkpoint=path)
    assert_same_weights(straight, resumed)
    assert history.epochs == straight_history.epochs == [0, 1, 2, 3]
    assert history.metrics == straight_history.metrics
    assert resumed.optimizer.steps == straight.optimizer.steps == 4 * 6
    for a, b in zip(resumed.optimizer.state, straight.optimizer.state, strict=True):
        for key in a:
            assert np.array_equal(a[key], b[key])
    assert load_checkpoint(path).epoch == 4


def test_resume_after_a_stop_in_the_middle_of_an_epoch(tmp_path, data):
    class StopAtStep(cr.Callback):
        def on_batch_end(self, step, logs):
            if step == 2:
                self.network.stop_training = True

    path = tmp_path / "run.safetensors"
    straight, straight_history = run(data, 3)
    run(data, 3, checkpoint=path, checkpoint_every=10, callbacks=[StopAtStep()])
    saved = load_checkpoint(path)
    assert (saved.epoch, saved.step) == (0, 3)
    resumed, history = run(data, 3, resume=path)
    assert_same_weights(straight, resumed)
    assert history.metrics == straight_history.metrics


def test_checkpoint_every_counts_epochs_and_always_saves_the_last(tmp_path, data):
    path = tmp_path / "c.safetensors"
    seen = []

    class Watch(cr.Callback):
        def on_epoch_begin(self, epoch, logs):
            seen.append(load_checkpoint(path).epoch if path.exists() else None)

    run(data, 5, checkpoint=path, checkpoint_every=2, callbacks=[Watch()])
    assert seen == [None, None, 2, 2, 4]
    assert load_checkpoint(path).epoch == 5
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        run(data, 1, checkpoint=path, checkpoint_every=0)
    with pytest.raises(FileNotFoundError, match="no directory .*absent for checkpoint"):
        run(data, 1, checkpoint=tmp_path / "absent" / "c.safetensors")


def test_resume_with_no_epochs_left_returns_the_saved_history(tmp_path, data):
    path = tmp_path / "c.safetensors"
    trained, history = run(data, 2, checkpoint=path)
    again, history_again = run(data, 2, resume=path)
    assert_same_weights(trained, again)
    assert history_again.metrics == history.metrics


def test_resume_refuses_a_different_architecture(tmp_path, data):
    path = tmp_path / "c.safetensors"
    run(data, 1, checkpoint=path)
    x, y = data
    other = cr.Network.from_sizes([64, 32, 16, 5], activation="relu", loss=cr.CrossEntropy(),
                                  optimizer=cr.Adam(), dropout=0.25)
    with pytest.raises(ValueError, match=r"different architecture: layer 0 is "
                                         r"Dense\(in_features=64, out_features=24.*out_features=32"):
        other.fit(x, y, epochs=2, resume=path, verbose=0)
    sgd = make_net("nesterov")
    with pytest.raises(ValueError, match="holds Adam state; this network's optimizer is SGD"):
        sgd.fit(x, y, epochs=2, resume=path, verbose=0)
    mse = cr.Network.from_sizes([64, 24, 16, 5], activation="relu", optimizer=cr.Adam(),
                                dropout=0.25)
    with pytest.raises(ValueError, match="trained with loss"):
        mse.fit(x, np.eye(5)[y], epochs=2, resume=path, verbose=0)


def test_resume_takes_the_optimizer_settings_from_the_checkpoint(tmp_path, data):
    path = tmp_path / "c.safetensors"
    run(data, 1, checkpoint=path)
    x, y = data
    net = make_net()
    net.optimizer.lr = 0.5
    net.fit(x, y, epochs=1, batch_size=16, resume=path, verbose=0)
    assert net.optimizer.lr == 2e-3


def test_resume_warns_when_the_batches_differ(tmp_path, data):
    path = tmp_path / "c.safetensors"
    run(data, 1, checkpoint=path)
    x, y = data
    with pytest.warns(RuntimeWarning, match="batch_size 16 -> 32"):
        make_net().fit(x, y, epochs=2, batch_size=32, resume=path, verbose=0)


def test_checkpoint_contents_and_loading_it_as_a_model(tmp_path, data):
    path = tmp_path / "c.safetensors"
    net, _ = run(data, 2, checkpoint=path)
    with safe_open(path, framework="numpy") as f:
        names = set(f.keys())
        meta = f.metadata()
    assert {"model.0.weight", "model.0.bias", "optimizer.0.weight.m", "optimizer.6.bias.v"} <= names
    assert meta["format"] == "chainrule-checkpoint" and meta["epoch"] == "2"
    state = json.loads(meta["rng"])
    assert state["bit_generator"] == "PCG64" and state["state"]["state"] > 2**64  # exact big ints
    assert set(json.loads(meta["layer_rngs"])) == {"2", "5"}  # the two Dropout layers
    # chainrule.load accepts a checkpoint and returns the network in it.
    loaded = cr.load(path)
    assert_same_weights(net, loaded)
    assert loaded.optimizer.steps == net.optimizer.steps
    assert_same_weights(net, load_checkpoint(path).build_network())


def test_a_model_file_is_not_a_checkpoint(tmp_path, data):
    net = make_net()
    net.save(tmp_path / "model.safetensors")
    with pytest.raises(cr.ModelFileError, match="is a chainrule model file, not a training checkpoint"):
        load_checkpoint(tmp_path / "model.safetensors")
    with pytest.raises(FileNotFoundError):
        net.fit(*data, epochs=1, resume=tmp_path / "absent.safetensors", verbose=0)


def rewrite(path, change, refresh_digest=True):
    """Edit a checkpoint; with ``refresh_digest``, as a buggy writer would (digest consistent)."""
    with safe_open(path, framework="numpy") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        meta = f.metadata()
    change(tensors, meta)
    if refresh_digest:
        meta["sha256"] = tensor_digest(tensors, meta)
    save_file(tensors, path, metadata=meta)


def test_newer_checkpoint_format_says_so(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, make_net(), epoch=0)
    rewrite(path, lambda t, m: m.update(format_version=str(CHECKPOINT_FORMAT_VERSION + 1)))
    with pytest.raises(cr.ModelFileError, match="checkpoint format version 2 .* reads up to "
                                                "version 1. Upgrade chainrule"):
        load_checkpoint(path)


@pytest.mark.parametrize("change, message", [
    (lambda t, m: t.pop("optimizer.0.weight.v"), "missing optimizer tensor 'optimizer.0.weight.v'"),
    (lambda t, m: t.update({"optimizer.0.weight.m": t["optimizer.0.weight.m"][:2]}),
     r"'optimizer.0.weight.m' is float32 \(2, 64\), expected float32 \(24, 64\)"),
    (lambda t, m: t.update({"optimizer.9.weight.m": t["optimizer.0.weight.m"]}),
     "unexpected optimizer tensor 'optimizer.9.weight.m'"),
    (lambda t, m: m.update(rng=json.dumps({"bit_generator": "os.system"})),
     "unsupported random generator state 'os.system'"),
    (lambda t, m: m.update(epoch="-1"), "epoch must be a non-negative integer"),
    (lambda t, m: m.update(history='{"epochs": [0], "metrics": {"loss": []}}'),
     "does not have one value per epoch"),
])
def test_tampered_checkpoints_are_refused_with_a_reason(tmp_path, data, change, message):
    path = tmp_path / "c.safetensors"
    run(data, 1, checkpoint=path)
    rewrite(path, change)
    with pytest.raises(cr.ModelFileError, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize("change", [
    lambda t, m: t["model.0.bias"].__setitem__(0, 1.0),
    lambda t, m: t["optimizer.3.weight.v"].__setitem__((0, 0), 0.5),
    lambda t, m: m.update(optimizer_steps="5"),
    lambda t, m: m.update(history=m["history"].replace("0.", "1.", 1)),
])
def test_any_change_that_keeps_the_file_well_formed_breaks_the_digest(tmp_path, data, change):
    path = tmp_path / "c.safetensors"
    run(data, 1, checkpoint=path)
    rewrite(path, change, refresh_digest=False)
    message = "contents do not match the SHA-256 digest stored in it"
    with pytest.raises(cr.ModelFileError, match=message):
        load_checkpoint(path)


def test_resume_warns_when_the_networks_optimizer_settings_are_ignored(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 4)), rng.integers(0, 3, 40)
    path = tmp_path / "c.safetensors"
    first = cr.Network.from_sizes([4, 5, 3], loss="cross_entropy",
                                  optimizer=cr.SGD(lr=0.1, momentum=0.9), seed=0)
    first.fit(x, y, epochs=1, checkpoint=path, verbose=0)
    other = cr.Network.from_sizes([4, 5, 3], loss="cross_entropy",
                                  optimizer=cr.SGD(lr=0.1, momentum=0.5), seed=0)
    with pytest.warns(UserWarning, match="differs in momentum"):
        other.fit(x, y, epochs=2, resume=path, verbose=0)
    assert other.optimizer.momentum == 0.9


# -- schemas of restored values ------------------------------------------------------------

MT_ZERO = {"bit_generator": "MT19937", "state": {"key": [0] * 624, "pos": 624}}


@pytest.mark.parametrize("change, message", [
    (lambda t, m: m.update(rng=json.dumps(MT_ZERO)), "MT19937 generator state: it is all zeros"),
    (lambda t, m: m.update(layer_rngs=json.dumps({"2": MT_ZERO})), "it is all zeros"),
    (lambda t, m: m.update(rng=json.dumps({"bit_generator": "MT19937", "state": {
        "key": [1] * 623, "pos": 0}})), r"state.state.key is out of range"),
    (lambda t, m: m.update(rng=json.dumps({"bit_generator": "PCG64", "state": {
        "state": 1, "inc": 2}, "has_uint32": 0, "uinteger": 0})), "state.state.inc is out of range"),
    (lambda t, m: m.update(rng=json.dumps({"bit_generator": "PCG64", "state": {
        "state": 1, "inc": 3}, "has_uint32": 0, "uinteger": 0, "extra": 1})),
     "must have exactly the fields"),
    (lambda t, m: m.update(rng=json.dumps({"bit_generator": "SFC64", "state": {
        "state": [1, 2, 3]}, "has_uint32": 0, "uinteger": 0})), "state.state.state is out of range"),
    (lambda t, m: m.update(history='{"epochs": [0, 5], "metrics": {}}'),
     "history epochs must increase and stay below epoch 1"),
    (lambda t, m: m.update(history='{"epochs": [0], "metrics": {"loss": [null]}}'),
     "holds non-numbers"),
    (lambda t, m: m.update(fit='{"batch_size": 0}'), "fit setting 'batch_size' is invalid: 0"),
    (lambda t, m: m.update(fit='{"batch_size": 16, "shuffle": "yes"}'), "fit setting 'shuffle'"),
    (lambda t, m: m.update(step="2", fit='{"batch_size": 16, "samples": 96}'),
     "needs fit setting 'epoch_loss'"),
    (lambda t, m: m.update(step="2", fit='{"batch_size": 16, "samples": 96, "epoch_loss": 3}'),
     "fit setting 'epoch_loss' is invalid: 3"),
    (lambda t, m: m.update(step="2", fit='{"batch_size": 16, "samples": 96, '
                                        '"epoch_loss": [1.5, null]}'),
     "fit setting 'epoch_loss' is invalid"),
    (lambda t, m: m.update(step="6", fit='{"batch_size": 16, "samples": 96, '
                                        '"epoch_loss": [1.5, 80]}'),
     "step 6 is not inside an epoch of 96 samples in batches of 16"),
    (lambda t, m: t["optimizer.3.weight.v"].__setitem__((0, 0), -1e-3),
     "tensor 'optimizer.3.weight.v' must not be negative"),
    (lambda t, m: t["optimizer.3.weight.m"].__setitem__((0, 0), np.inf),
     "tensor 'optimizer.3.weight.m' contains NaN or infinite values"),
    (lambda t, m: m.update(architecture=json.dumps([{"type": "x" * 10_000}])),
     r"unknown type 'x{80}'\.\.\. \(10,000 characters\)"),
])
def test_restored_values_are_checked_against_a_schema(tmp_path, data, change, message):
    path = tmp_path / "c.safetensors"
    run(data, 1, checkpoint=path)
    rewrite(path, change)
    with pytest.raises(cr.ModelFileError, match=message) as caught:
        load_checkpoint(path)
    assert len(str(caught.value)) < 400


def test_every_generator_numpy_offers_round_trips_through_a_checkpoint(tmp_path):
    from chainrule.checkpoint import generator_from_state

    for name in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"):
        net = cr.Network([cr.Dense(3, 4, seed=0), cr.Dropout(0.5, rng=np.random.Generator(
            getattr(np.random, name)(5)))])
        rng = np.random.Generator(getattr(np.random, name)(9))
        rng.random(3)
        path = tmp_path / f"{name}.safetensors"
        save_checkpoint(path, net, epoch=0, rng=rng)
        saved = load_checkpoint(path)
        assert saved.generator().random(4).tolist() == rng.random(4).tolist()
        restored = saved.build_network()
        assert (restored.layers[1].rng.integers(0, 1000, 5).tolist()
                == net.layers[1].rng.integers(0, 1000, 5).tolist())
        assert generator_from_state(json.loads(json.dumps(
            cr.checkpoint._jsonable(rng.bit_generator.state)))).random() == rng.random()


def test_a_network_with_batchnorm_buffers_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    net = cr.Network([cr.Dense(4, 6, seed=0), cr.BatchNorm1d(6), cr.ReLU(), cr.Dense(6, 2, seed=1)],
                     optimizer=cr.Adam())
    net.fit(rng.random((20, 4)), rng.random((20, 2)), epochs=1, batch_size=5, verbose=0)
    path = tmp_path / "bn.safetensors"
    save_checkpoint(path, net, epoch=1)
    saved = load_checkpoint(path)
    assert int(saved.parameters["1.num_batches_tracked"]) == 4
    again = saved.build_network()
    for name, value in net.state_dict().items():
        assert np.array_equal(again.state_dict()[name], value), name
    net.save(tmp_path / "bn_model.safetensors")
    loaded = cr.load(tmp_path / "bn_model.safetensors")
    assert np.array_equal(loaded.layers[1].running_var, net.layers[1].running_var)


# -- one run per checkpoint path ----------------------------------------------------------

HOLD_LOCK = """
import sys, time
from chainrule.checkpoint import checkpoint_lock
with checkpoint_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_run_on_the_same_checkpoint_is_refused(tmp_path, data):
    import subprocess
    import sys

    from chainrule.errors import CheckpointInUseError

    path = tmp_path / "run.safetensors"
    x, y = data
    with checkpoint_lock(path), pytest.raises(CheckpointInUseError,  # another run, this process
                                              match="in use by another training run"):
        make_net().fit(x, y, epochs=1, verbose=0, checkpoint=path)
    assert not path.exists()  # refused before training, so nothing was written
    # Another process (as a container sharing the volume would be): refused while it
    # lives, accepted once it is gone, whatever its PID means here.
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointInUseError) as caught:
            make_net().fit(x, y, epochs=1, verbose=0, checkpoint=path)
        assert caught.value.errno == errno.EWOULDBLOCK and isinstance(caught.value, OSError)
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    make_net().fit(x, y, epochs=1, verbose=0, checkpoint=path)
    assert load_checkpoint(path).epoch == 1


HOLD_TEMP = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
print("writing", flush=True)
time.sleep(60)
"""


def test_stale_temporary_files_are_removed_but_never_a_live_writers(tmp_path):
    """Temporary files named with PIDs that mean nothing here (another PID namespace):
    the one whose writer holds its lock stays, the abandoned one goes."""
    import subprocess
    import sys

    path = tmp_path / "c.safetensors"
    live = tmp_path / f".c.safetensors.{os.getpid()}.aaaaaaaaaaaa.part"  # a PID alive here...
    dead = tmp_path / ".c.safetensors.1.bbbbbbbbbbbb.part"  # ...and one that is init's
    dead.write_bytes(b"half a checkpoint")
    writer = subprocess.Popen([sys.executable, "-c", HOLD_TEMP, str(live)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        save_checkpoint(path, make_net(), epoch=0)
        assert live.exists() and not dead.exists()
    finally:
        writer.kill()
        writer.wait(timeout=30)
        writer.stdout.close()
    save_checkpoint(path, make_net(), epoch=0)  # its writer is gone now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]
