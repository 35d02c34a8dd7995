"""chainrule's CNN recipe beside the same CNN in PyTorch: accuracy, training time, per-layer times.

Each contender runs in its own process (``--worker chainrule|torch``), so
neither's thread pool or allocator disturbs the other. Everything but the
framework is shared:

- architecture and initial weights: ``chainrule.recipes_cnn.build_cnn(CNNRecipe())``
  (conv 32 5x5 pad 2, pool, conv 64 5x5 pad 2, pool, 128 hidden, dropout 0.3,
  10 outputs); the parent writes its state dict once and both load it
  (PyTorch's ``nn.Sequential`` with ``load_state_dict``);
- data: the 10,000 bundled training digits as (n, 1, 28, 28) float32; each
  epoch the same shuffled order and the same random shifts of up to 2 px
  (``chainrule.random_shift`` on a generator seeded by ``(seed, epoch)``,
  drawn identically in both processes); only the dropout masks differ;
- Adam at 2e-3 along the same cosine to 0 (set at the start of each epoch),
  batch 128, cross-entropy on logits, float32;
- ``--threads`` threads for both (PyTorch's ``set_num_threads``, NumPy's BLAS
  through OPENBLAS_NUM_THREADS set before NumPy loads).

Reported: test accuracy on the 10,000 test digits, wall time of the
training loop, per-layer forward and backward times at batch 128 (chainrule's
layers against ``torch.nn.functional``'s on the same tensors), and the memory
peak of one chainrule training step (``tracemalloc``, which sees NumPy's
allocations) beside each process's peak resident size.

Usage::

    python benchmarks/cnn_vs_torch.py                  # 12 epochs (the PyTorch reference's), both, 2 threads
    python benchmarks/cnn_vs_torch.py --epochs 1       # a quick look
    python benchmarks/cnn_vs_torch.py --layers-only    # just the per-layer times

Timings on a shared machine are noisy: say the load (``os.getloadavg``,
printed) beside any number quoted from here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _threads import pin_threads  # benchmarks/_threads.py, beside this script

THREADS = pin_threads(sys.argv[1:])  # before NumPy starts its thread pool

import numpy as np  # noqa: E402

from chainrule.augmentation import random_shift  # noqa: E402
from chainrule.datasets import load_mnist  # noqa: E402
from chainrule.recipes_cnn import CNNRecipe, build_cnn  # noqa: E402
from chainrule.training import cosine_schedule  # noqa: E402

BATCH = 128


def epoch_batches(x: np.ndarray, y: np.ndarray, epoch: int, seed: int):
    """The epoch's shuffled, shifted batches: the same in both processes."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(x))
    shifted = random_shift(2)(x[order], rng)
    labels = y[order]
    for start in range(0, len(x), BATCH):
        yield shifted[start : start + BATCH], labels[start : start + BATCH]


def _timed(fn, repeat: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


# -- the two workers ----------------------------------------------------------------------


def chainrule_worker(args: argparse.Namespace) -> dict:
    import tracemalloc

    import chainrule as cr

    recipe = CNNRecipe(epochs=args.epochs, seed=args.seed)
    net = cr.load(args.weights, architecture=build_cnn(recipe))
    (x, y), (x_test, y_test) = load_mnist(flatten=False)
    result = {"layers": chainrule_layer_times(net, x[:BATCH])}
    if args.layers_only:
        return result
    xb, yb = x[:BATCH], y[:BATCH]
    probe = build_cnn(recipe)
    probe.train_step(xb, yb)  # warm: first-step allocations out of the way
    tracemalloc.start()
    probe.train_step(xb, yb)
    result["step_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    schedule = cosine_schedule(recipe.lr, recipe.epochs, recipe.final_lr)
    started = time.perf_counter()
    for epoch in range(recipe.epochs):
        net.optimizer.lr = schedule(epoch)
        for xb, yb in epoch_batches(x, y, epoch, args.seed):
            net.train_step(xb, yb)
        print(f"  chainrule epoch {epoch + 1}: {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)
    result["train_seconds"] = time.perf_counter() - started
    result["accuracy"] = net.evaluate(x_test, y_test, batch_size=500)["accuracy"]
    return result


def chainrule_layer_times(net, x: np.ndarray) -> dict:
    times, h = {}, x
    for i, layer in enumerate(net.layers[:7]):  # the convolutional part, through Flatten
        h_in = h
        h = layer.forward(h_in, True)
        g = np.ones_like(h)
        name = f"{i} {layer!r}"
        # the first layer's dL/dx is never needed in training: backward_params, as a step runs it
        backward = layer.backward_params if i == 0 else layer.backward
        forward_ms = 1e3 * _timed(lambda layer=layer, h_in=h_in: layer.forward(h_in, True))
        both_ms = 1e3 * _timed(lambda layer=layer, h_in=h_in, backward=backward, g=g:
                               (layer.forward(h_in, True), backward(g)))
        times[name] = {"forward_ms": forward_ms, "backward_ms": both_ms - forward_ms}
    return times


def torch_model(weights: str):
    import torch
    from safetensors.torch import load_file

    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10),
    )
    model.load_state_dict(load_file(weights))
    return model


def torch_worker(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    torch.manual_seed(args.seed)
    model = torch_model(args.weights)
    (x, y), (x_test, y_test) = load_mnist(flatten=False)
    result = {"layers": torch_layer_times(model, x[:BATCH])}
    if args.layers_only:
        return result
    recipe = CNNRecipe(epochs=args.epochs, seed=args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    schedule = cosine_schedule(recipe.lr, recipe.epochs, recipe.final_lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    started = time.perf_counter()
    model.train()
    for epoch in range(recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = schedule(epoch)
        for xb, yb in epoch_batches(x, y, epoch, args.seed):
            optimizer.zero_grad()
            loss = loss_fn(model(torch.from_numpy(xb)), torch.from_numpy(yb))
            loss.backward()
            optimizer.step()
        print(f"  torch epoch {epoch + 1}: {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)
    result["train_seconds"] = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x_test[i : i + 500]))
                            for i in range(0, len(x_test), 500)])
    result["accuracy"] = float((logits.argmax(1).numpy() == y_test).mean())
    return result


def torch_layer_times(model, x: np.ndarray) -> dict:
    import torch

    times, h = {}, torch.from_numpy(x)
    for i, module in enumerate(list(model)[:7]):
        h_in = h.detach().requires_grad_(i > 0)
        h = module(h_in)
        g = torch.ones_like(h)

        def forward(module=module, h_in=h_in):
            with torch.no_grad():
                module(h_in)

        def both(module=module, h_in=h_in, g=g):
            module.zero_grad(set_to_none=True)
            module(h_in).backward(g)

        fwd = _timed(forward)
        times[f"{i} {module}"] = {"forward_ms": 1e3 * fwd, "backward_ms": 1e3 * (_timed(both) - fwd)}
        h = h.detach()
    return times


# -- the parent ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers-only", action="store_true")
    parser.add_argument("--worker", choices=["chainrule", "torch"])
    parser.add_argument("--weights")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args()
    if args.worker:
        work = chainrule_worker if args.worker == "chainrule" else torch_worker
        result = work(args)
        import resource

        result["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "initial.safetensors")
        from safetensors.numpy import save_file

        net = build_cnn(CNNRecipe(seed=args.seed))
        save_file({k: np.ascontiguousarray(v) for k, v in net.state_dict().items()}, weights)
        for name in ("chainrule", "torch"):
            command = [sys.executable, __file__, "--worker", name, "--weights", weights,
                       "--epochs", str(args.epochs), "--seed", str(args.seed),
                       "--threads", str(args.threads)] + (["--layers-only"] if args.layers_only else [])
            done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    load_after = os.getloadavg()

    print(f"CNN recipe ({CNNRecipe(epochs=args.epochs).describe()}), {args.threads} threads each; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"\n{'layer (batch 128)':44s} {'chainrule fwd/bwd ms':>22s} {'torch fwd/bwd ms':>18s}")
    for (name, ours), theirs in zip(results["chainrule"]["layers"].items(),
                                    results["torch"]["layers"].values()):
        print(f"{name:44s} {ours['forward_ms']:10.1f} {ours['backward_ms']:10.1f} "
              f"{theirs['forward_ms']:8.1f} {theirs['backward_ms']:8.1f}")
    if not args.layers_only:
        ours, theirs = results["chainrule"], results["torch"]
        print(f"\n{'':10s} {'test accuracy':>14s} {'training s':>11s} {'peak RSS MiB':>13s}")
        for name, r in (("chainrule", ours), ("torch", theirs)):
            print(f"{name:10s} {100 * r['accuracy']:13.2f}% {r['train_seconds']:11.1f} "
                  f"{r['max_rss_mib']:13.0f}")
        print(f"\nchainrule / torch training time: {ours['train_seconds'] / theirs['train_seconds']:.2f}x"
              f"   chainrule training-step peak (tracemalloc): {ours['step_peak_mib']:.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "epochs": args.epochs, "load": [load_before, load_after],
                       **results}, f, indent=1)


if __name__ == "__main__":
    main()
