import numpy as np
import pytest

import chainrule as cr


def blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centres = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.0]])
    x = centres[y] + rng.normal(scale=0.5, size=(n, 2))
    return x.astype(np.float32), y


def classifier(**kwargs):
    return cr.Network.from_sizes([2, 16, 3], loss="cross_entropy",
                                 optimizer=kwargs.pop("optimizer", cr.Adam(lr=0.01)), seed=0, **kwargs)


def test_fit_learns_and_reports_history():
    x, y = blobs()
    net = classifier()
    history = net.fit(x, y, epochs=15, batch_size=32, validation_data=(x, y), verbose=0, seed=0)
    assert len(history) == 15 and history.epochs == list(range(15))
    assert set(history.metrics) == {"loss", "val_loss", "val_accuracy"}
    assert history["loss"][-1] < history["loss"][0] / 2
    assert history["val_accuracy"][-1] > 0.95


def test_fit_is_repeatable_with_a_seed():
    x, y = blobs()
    a, b = classifier(dropout=0.2), classifier(dropout=0.2)
    ha = a.fit(x, y, epochs=3, batch_size=16, seed=5, verbose=0)
    hb = b.fit(x, y, epochs=3, batch_size=16, seed=5, verbose=0)
    assert ha["loss"] == hb["loss"]
    for name, p in a.parameters().items():
        np.testing.assert_array_equal(p, b.parameters()[name])


def test_verbose_zero_prints_nothing(capsys):
    x, y = blobs(64)
    classifier().fit(x, y, epochs=2, validation_data=(x, y), verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_prints_progress(capsys):
    x, y = blobs(64)
    classifier().fit(x, y, epochs=2, verbose=1)
    assert "epoch 2/2" in capsys.readouterr().err
    classifier().fit(x, y, epochs=2, verbose=2, validation_data=(x, y))
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "val_accuracy" in out


def test_nan_in_training_data_is_refused_naming_the_row():
    x, y = blobs(50)
    x[17, 1] = np.nan
    net = classifier()
    before = {k: v.copy() for k, v in net.parameters().items()}
    with pytest.raises(ValueError, match="training inputs contains NaN or infinite values, first in row 17"):
        net.fit(x, y, verbose=0)
    x[17, 1] = np.inf
    with pytest.raises(ValueError, match="row 17"):
        net.fit(x, y, verbose=0)
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(value, before[name])


def test_bad_labels_and_widths_are_refused_before_training():
    x, y = blobs(50)
    y[3] = 7
    with pytest.raises(ValueError, match="class label 7 at index 3 is out of range for 3 classes"):
        classifier().fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"layer 0 \(Dense\(2, 16\)\).*2 features.*\(50, 5\)"):
        classifier().fit(np.zeros((50, 5)), np.zeros(50, int), verbose=0)
    with pytest.raises(ValueError, match="50 inputs but 49 targets"):
        classifier().fit(x, y[:49], verbose=0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_stops_with_epoch_and_step_and_keeps_finite_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)) * 100
    y = rng.normal(size=(64, 1)) * 100
    net = cr.Network.from_sizes([4, 32, 1], optimizer=cr.SGD(lr=10.0), seed=0)
    with pytest.raises(cr.NonFiniteLossError, match=r"epoch \d+, step \d+.*smaller learning rate"):
        net.fit(x, y, epochs=50, batch_size=8, verbose=0)
    for name, value in net.parameters().items():
        assert np.all(np.isfinite(value)), name


def test_early_stopping_restores_best_weights():
    x, y = blobs()
    net = classifier(optimizer=cr.SGD(lr=0.5))
    stopper = cr.EarlyStopping(monitor="val_loss", patience=2, min_delta=1.0)
    history = net.fit(x, y, epochs=30, validation_data=(x, y), callbacks=[stopper], verbose=0)
    # min_delta=1.0 means nothing after the first epoch counts as improvement
    assert len(history) == 3 and stopper.best_epoch == 0 and stopper.stopped_epoch == 2
    assert net.evaluate(x, y)["loss"] == pytest.approx(history["val_loss"][0], rel=1e-6)


def test_early_stopping_needs_its_metric():
    x, y = blobs(40)
    with pytest.raises(KeyError, match="val_loss"):
        classifier().fit(x, y, epochs=2, callbacks=[cr.EarlyStopping()], verbose=0)


def test_learning_rate_schedule():
    x, y = blobs(40)
    seen = []

    class Spy(cr.Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append(self.network.optimizer.lr)

    schedule = cr.cosine_schedule(0.1, epochs=4, final_lr=0.0)
    classifier().fit(x, y, epochs=4, callbacks=[cr.LearningRateScheduler(schedule), Spy()], verbose=0)
    # final_lr is reached at the end of the last epoch, not during it
    np.testing.assert_allclose(seen, [0.1, 0.1 * (1 + np.cos(np.pi / 4)) / 2, 0.05,
                                      0.1 * (1 + np.cos(3 * np.pi / 4)) / 2], atol=1e-12)
    assert schedule(4) == 0.0


def test_stop_training_ends_after_the_current_step():
    x, y = blobs(100)
    steps = []

    class StopAtThree(cr.Callback):
        def on_batch_end(self, step, logs):
            steps.append(step)
            if step == 2:
                self.network.stop_training = True

    history = classifier().fit(x, y, epochs=5, batch_size=10, callbacks=[StopAtThree()], verbose=0)
    assert steps == [0, 1, 2] and len(history) == 1


def test_random_shift_moves_pixels_and_keeps_ink():
    image = np.zeros((28, 28), np.float32)
    image[10:14, 12:15] = 1.0
    batch = np.repeat(image.reshape(1, 784), 200, axis=0)
    shifted = cr.random_shift(2)(batch, np.random.default_rng(0)).reshape(-1, 28, 28)
    assert shifted.dtype == np.float32
    np.testing.assert_array_equal(shifted.sum(axis=(1, 2)), image.sum())  # nothing falls off
    offsets = set()
    for out in shifted:
        ys, xs = np.nonzero(out)
        offsets.add((ys.min() - 10, xs.min() - 12))
        np.testing.assert_array_equal(out[ys.min():ys.min() + 4, xs.min():xs.min() + 3], 1.0)
    assert offsets == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


def test_fit_with_augmentation_runs():
    rng = np.random.default_rng(0)
    x = rng.random((64, 784)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    net = cr.Network.from_sizes([784, 8, 10], loss="cross_entropy", seed=0)
    history = net.fit(x, y, epochs=2, augment=cr.random_shift(1), verbose=0, seed=0)
    assert np.isfinite(history["loss"]).all()


def test_a_callback_can_add_metrics_to_the_history(capsys):
    x, y = blobs(60)

    class Norm(cr.Callback):
        def on_epoch_end(self, epoch, logs):
            logs["weight_norm"] = float(np.linalg.norm(self.network.parameters()["0.weight"]))

    history = classifier().fit(x, y, epochs=2, callbacks=[Norm()], verbose=2)
    assert len(history["weight_norm"]) == 2 and history["weight_norm"][0] > 0
    assert "weight_norm" in capsys.readouterr().out  # the progress display runs last


# -- issue 9 §1: weights, empty sets ---------------------------------------------------------


def test_fit_on_an_empty_training_set_is_refused():
    net = classifier()
    with pytest.raises(ValueError, match="training set is empty"):
        net.fit(np.zeros((0, 2), np.float32), np.zeros(0, int), verbose=0)
    x, y = blobs(20)
    with pytest.raises(ValueError, match="validation set is empty"):
        net.fit(x, y, verbose=0, validation_data=(np.zeros((0, 2)), np.zeros(0, int)))


def test_fit_with_weights_takes_the_steps_train_step_takes():
    # fit with weights = the same batches through train_step with the same weights
    x, y = blobs(40)
    w = np.random.default_rng(3).uniform(0.5, 2, 40)
    a, b = classifier(), classifier()
    history = a.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0,
                    sample_weight=w, class_weight="balanced")
    c = cr.CrossEntropy().class_weights("balanced", y, 3)  # over the whole training set
    losses = [b.train_step(x[i:i + 16], y[i:i + 16], sample_weight=w[i:i + 16], class_weight=c)
              for i in range(0, 40, 16)]
    for name, value in a.parameters().items():
        np.testing.assert_array_equal(value, b.parameters()[name])
    assert history["loss"][0] == pytest.approx(np.dot(losses, [16, 16, 8]) / 40, rel=1e-6)


def test_class_weight_moves_the_decision_towards_the_weighted_class():
    # 90 samples of class 0, 10 of class 1, overlapping: balanced weights raise recall of class 1
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(90, int), np.ones(10, int)]
    x = (rng.normal(size=(100, 2)) + y[:, None] * 1.0).astype(np.float32)

    def recall(**kwargs):
        net = cr.Network.from_sizes([2, 2], loss="cross_entropy", optimizer=cr.Adam(lr=0.05), seed=0)
        net.fit(x, y, epochs=30, batch_size=100, verbose=0, seed=0, **kwargs)
        return float(np.mean(net.predict(x[y == 1]).argmax(1) == 1))

    assert recall(class_weight="balanced") > recall() + 0.3


def test_sample_weight_zero_is_like_leaving_the_sample_out():
    x, y = blobs(30)
    w = np.ones(30)
    w[::3] = 0.0
    a, b = classifier(), classifier()
    # full batch: mean over all 30 with a third weighted 0 = 20/30 of the mean over the 20 kept
    la = a.train_step(x, y, sample_weight=w)
    lb = b.train_step(x[w > 0], y[w > 0])
    assert la == pytest.approx(lb * 20 / 30, rel=1e-6)
    evaluated = classifier().evaluate(x, y, sample_weight=w)
    kept = classifier().evaluate(x[w > 0], y[w > 0])
    assert evaluated["accuracy"] == pytest.approx(kept["accuracy"])
    with pytest.raises(ValueError, match="every sample_weight is 0"):
        classifier().fit(x, y, sample_weight=np.zeros(30), verbose=0)


def test_validation_data_may_carry_sample_weights():
    x, y = blobs(30)
    w = np.r_[np.ones(15), np.zeros(15)]
    net = classifier()
    history = net.fit(x, y, verbose=0, validation_data=(x, y, w))
    assert history["val_loss"][0] == pytest.approx(net.evaluate(x[:15], y[:15])["loss"] / 2, rel=1e-6)


# -- issue 9 §5: schedules and early stopping do what their names say -----------------------


def test_cosine_schedule_is_torchs_cosine_annealing():
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7, eta_min=0.01)
    ours = cr.cosine_schedule(0.3, 7, final_lr=0.01)
    for epoch in range(7):
        assert ours(epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()


@pytest.mark.parametrize("epochs", [1, 2, 5])
def test_every_epoch_of_a_cosine_schedule_trains(epochs):
    x, y = blobs(40)
    snapshots = []

    class Snapshot(cr.Callback):
        def on_epoch_end(self, epoch, logs):
            snapshots.append({k: v.copy() for k, v in self.network.parameters().items()})

    net = classifier(optimizer=cr.SGD(lr=0.1))
    snapshots.append({k: v.copy() for k, v in net.parameters().items()})
    schedule = cr.cosine_schedule(0.1, epochs)  # final_lr=0: the default case
    history = net.fit(x, y, epochs=epochs, batch_size=40, verbose=0,
                      callbacks=[cr.LearningRateScheduler(schedule), Snapshot()])
    assert len(history["loss"]) == epochs
    for before, after in zip(snapshots, snapshots[1:]):
        assert all(not np.array_equal(before[k], after[k]) for k in before)
    assert all(schedule(e) > 0 for e in range(epochs))


def test_schedules_that_would_not_train_are_refused():
    with pytest.raises(ValueError, match="epochs >= 1"):
        cr.cosine_schedule(0.1, 0)
    with pytest.raises(ValueError, match=r"final_lr must be in \[0, lr\]"):
        cr.cosine_schedule(0.1, 3, final_lr=0.2)
    x, y = blobs(20)
    with pytest.raises(ValueError, match="learning rate 0.0 for epoch 2.*would not train"):
        classifier().fit(x, y, epochs=2, verbose=0,
                         callbacks=[cr.LearningRateScheduler(lambda e: 0.1 if e == 0 else 0.0)])


def test_final_checkpoint_holds_the_restored_best_weights(tmp_path):
    x, y = blobs(60)
    x_val, y_val = blobs(30, seed=1)
    y_val = (y_val + 1) % 3  # validation disagrees with training: val_loss rises after epoch 1
    path = tmp_path / "run.safetensors"
    stop = cr.EarlyStopping(patience=2, restore_best_weights=True)
    net = classifier()
    history = net.fit(x, y, epochs=10, verbose=0, validation_data=(x_val, y_val),
                      callbacks=[stop], checkpoint=path)
    assert stop.best_epoch < len(history["loss"]) - 1  # it did restore an earlier epoch
    best = net.evaluate(x_val, y_val)["loss"]
    assert best == pytest.approx(min(history["val_loss"]), rel=1e-6)
    saved = cr.load(path)
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(saved.state_dict()[name], value)


# -- issue 9 §8: habits from Keras and scikit-learn -------------------------------------------


def test_validation_split_is_seeded_random_and_stratified_on_class_sorted_data():
    x, y = blobs(200)
    order = np.argsort(y, kind="stable")
    x, y = x[order], y[order]  # sorted by class: Keras' last-rows split validates on class 2 only
    seen = {}

    class Watch(cr.Callback):
        def on_train_begin(self, logs):
            seen["samples"] = logs["samples"]

    net = classifier()
    history = net.fit(x, y, epochs=2, verbose=0, validation_split=0.1, seed=4, callbacks=[Watch()])
    assert seen["samples"] == 180 and "val_accuracy" in history
    train, val = cr.training.validation_rows(200, 0.1, seed=4, stratify=y)
    counts = np.bincount(y)
    assert np.all(np.abs(np.bincount(y[val]) - counts / 10) < 1)  # every class, in proportion
    assert len(val) == 20 and np.intersect1d(train, val).size == 0
    # the history's val_loss is exactly the held-out rows' loss
    assert history["val_loss"][-1] == pytest.approx(net.evaluate(x[val], y[val])["loss"], rel=1e-6)
    # the same seed holds out the same rows; another seed other rows
    again = cr.training.validation_rows(200, 0.1, seed=4, stratify=y)[1]
    np.testing.assert_array_equal(again, val)
    assert not np.array_equal(cr.training.validation_rows(200, 0.1, seed=5, stratify=y)[1], val)


def test_validation_split_arguments_are_checked():
    x, y = blobs(20)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"share in \(0, 1\)"):
            classifier().fit(x, y, verbose=0, validation_split=bad)
    with pytest.raises(ValueError, match="not both"):
        classifier().fit(x, y, verbose=0, validation_split=0.2, validation_data=(x, y))
    (xt, yt), (xv, yv) = cr.train_validation_split(x, y, 5, seed=0)
    assert len(xv) == 5 and len(xt) == 15
    with pytest.raises(ValueError, match="cannot hold out 20 of 20"):
        cr.train_validation_split(x, y, 20)


def test_validation_split_of_one_hot_and_binary_targets_is_stratified():
    y = np.r_[np.zeros(30, int), np.ones(10, int)]
    from chainrule.training import _stratify_labels

    np.testing.assert_array_equal(_stratify_labels(cr.CrossEntropy(), np.eye(2)[y]), y)
    np.testing.assert_array_equal(_stratify_labels(cr.BinaryCrossEntropy(), y[:, None] * 1.0), y)
    assert _stratify_labels(cr.SquaredError(), y * 1.0) is None
    val = cr.training.validation_rows(40, 0.2, stratify=y)[1]
    assert np.bincount(y[val]).tolist() == [6, 2]


def test_history_reads_like_keras():
    x, y = blobs(30)
    history = classifier().fit(x, y, epochs=2, verbose=0, validation_data=(x, y))
    assert isinstance(history.history, dict)
    assert list(history.keys()) == ["loss", "val_loss", "val_accuracy"]
    assert history.history["loss"] == history["loss"] and len(history.history["loss"]) == 2
    assert dict(history.items()) == history.history and list(history) == list(history.keys())
    assert history.epoch == [0, 1] and history.get("nope", 3) == 3


def test_early_stopping_restores_batchnorm_statistics_with_the_weights():
    x, y = blobs(60)
    x_val, y_val = blobs(30, seed=1)
    y_val = (y_val + 1) % 3
    net = cr.Network([cr.Dense(2, 8, seed=0), cr.BatchNorm1d(8), cr.ReLU(), cr.Dense(8, 3, seed=1)],
                     loss="cross_entropy", optimizer=cr.Adam(lr=0.01))
    states = []

    class Keep(cr.Callback):
        def on_epoch_end(self, epoch, logs):
            states.append({k: v.copy() for k, v in self.network.state_dict().items()})

    stop = cr.EarlyStopping(patience=2)
    net.fit(x, y, epochs=10, verbose=0, validation_data=(x_val, y_val), callbacks=[Keep(), stop])
    for name, value in net.state_dict().items():  # running_mean / running_var included
        np.testing.assert_array_equal(value, states[stop.best_epoch][name])


def test_a_resumed_run_holds_out_the_rows_its_checkpoint_started_with(tmp_path):
    x, y = blobs(60)
    path = tmp_path / "run.safetensors"
    whole = classifier().fit(x, y, epochs=3, verbose=0, validation_split=0.2, seed=3)
    classifier().fit(x, y, epochs=2, verbose=0, validation_split=0.2, seed=3, checkpoint=path)
    resumed = classifier().fit(x, y, epochs=3, verbose=0, validation_split=0.2, resume=path)
    assert resumed["val_loss"] == whole["val_loss"]  # seed not repeated: the same rows anyway
