"""Hostile model files: ``chainrule.load`` and ``load_checkpoint`` never crash, hang,
run code or allocate more than the file justifies.

Every fuzz target feeds generated files to the loader and allows exactly one
outcome besides success: ``ModelFileError`` (the documented error for a bad
file). Success is allowed only where the file still describes the original
model exactly. The peak memory of each load, as traced by ``tracemalloc``
(NumPy reports its buffers to it), must stay within a small multiple of the
file's size.

``CHAINRULE_FUZZ_EXAMPLES`` sets the examples per target (default 150).
"""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as to_bytes

import chainrule as cr
from chainrule.checkpoint import load_checkpoint, save_checkpoint
from chainrule.datasets import IDXFormatError, read_idx
from chainrule.io import DIGEST_KEY, read_safetensors, tensor_digest

EXAMPLES = int(os.environ.get("CHAINRULE_FUZZ_EXAMPLES", "150"))
# No per-example deadline on a shared machine; a hang would still stall the run.
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CORPUS = Path(__file__).parent / "data" / "corpus"
# Besides the file itself, a load may use this much for Python objects and
# the (small) network it builds.
SLACK = 1 << 20


def make_model() -> cr.Network:
    return cr.Network([cr.Dense(4, 6, seed=0), cr.LeakyReLU(0.2), cr.Dropout(0.1),
                       cr.Dense(6, 3, seed=1), cr.Softmax()],
                      loss=cr.MeanSquaredError(), optimizer=cr.Adam(lr=0.003))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def model_bytes(workdir) -> bytes:
    make_model().save(workdir / "valid.safetensors")
    return (workdir / "valid.safetensors").read_bytes()


@pytest.fixture(scope="module")
def checkpoint_bytes(workdir) -> bytes:
    net = make_model()
    rng = np.random.default_rng(0)
    net.fit(rng.random((8, 4)), rng.random((8, 3)), epochs=1, batch_size=4, verbose=0)
    save_checkpoint(workdir / "valid.ckpt", net, epoch=1, rng=rng)
    return (workdir / "valid.ckpt").read_bytes()


def load_hostile(workdir: Path, data: bytes, loader=cr.load):
    """Load ``data`` from a file; return the result or the ModelFileError, checking memory."""
    path = workdir / "hostile.safetensors"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        result = loader(path)
    except cr.ModelFileError as error:
        result = error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= 8 * len(data) + SLACK, f"{peak} bytes traced for a {len(data)}-byte file"
    return result


def same_model(a: cr.Network, b: cr.Network) -> bool:
    return a.get_config() == b.get_config() and all(
        np.array_equal(x, y) for x, y in zip(a.parameters().values(), b.parameters().values(),
                                             strict=True)
    )


def parts(data: bytes, workdir: Path):
    path = workdir / "parts.safetensors"
    path.write_bytes(data)
    return read_safetensors(path)


def rebuild(tensors, metadata, refresh_digest=True) -> bytes:
    """A well-formed file with these contents; the digest made consistent, as a buggy writer would."""
    metadata = dict(metadata)
    if refresh_digest:
        metadata[DIGEST_KEY] = tensor_digest(tensors, metadata)
    return to_bytes(tensors, metadata=metadata)


# -- raw bytes -------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes(workdir, data):
    assert isinstance(load_hostile(workdir, data), cr.ModelFileError)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=8,
)


@FUZZ
@given(header=st.dictionaries(st.text(max_size=12), json_values, max_size=4),
       data=st.binary(max_size=64), lie=st.sampled_from([0, 0, 0, 1, -1, 2**32, 2**63]))
def test_random_json_headers(workdir, header, data, lie):
    text = json.dumps(header).encode()
    length = max(len(text) + lie, 0) % 2**64
    result = load_hostile(workdir, struct.pack("<Q", length) + text + data)
    assert isinstance(result, cr.ModelFileError)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10**9))
def test_truncated_model(workdir, model_bytes, cut):
    result = load_hostile(workdir, model_bytes[: cut % len(model_bytes)])
    assert isinstance(result, cr.ModelFileError)


@FUZZ
@given(bits=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=3,
                     unique=True))
def test_bit_flips_in_model(workdir, model_bytes, bits):
    data = bytearray(model_bytes)
    for bit in bits:
        bit %= 8 * len(data)
        data[bit // 8] ^= 1 << (bit % 8)
    result = load_hostile(workdir, bytes(data))
    # Flips may only pass unnoticed where they change nothing, e.g. header
    # padding turned from a space into a tab (3 flips). Up to 3 flips cannot
    # switch the digest off and change something: renaming its key and turning
    # format version 2 into 1 (a file from before digests) already takes 3.
    assert isinstance(result, cr.ModelFileError) or same_model(result, make_model())


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10**9),
       bits=st.lists(st.integers(min_value=0, max_value=10**9), max_size=3, unique=True))
def test_truncated_or_flipped_checkpoint(workdir, checkpoint_bytes, cut, bits):
    data = bytearray(checkpoint_bytes)
    for bit in bits:
        bit %= 8 * len(data)
        data[bit // 8] ^= 1 << (bit % 8)
    if not bits or cut % 2:
        data = data[: cut % len(data)]
    result = load_hostile(workdir, bytes(data), load_checkpoint)
    assert isinstance(result, cr.ModelFileError) or (
        bytes(data) != checkpoint_bytes and result.epoch == 1  # whitespace-only change
    ) or bytes(data) == checkpoint_bytes


# -- well-formed files that lie ----------------------------------------------------------

DTYPES = ["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "I32", "I16", "I8", "U64",
          "U32", "U16", "U8", "BOOL", "C64", "F4", "F6_E2M3", "E8M0", "XX"]


@FUZZ
@given(
    shapes=st.lists(st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 8), max_size=4),
                    min_size=1, max_size=3),
    dtypes=st.lists(st.sampled_from(DTYPES), min_size=3, max_size=3),
    offsets=st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 64), min_size=6, max_size=6),
    claim=st.integers(1, 2**62) | st.integers(1, 8),
    data=st.binary(max_size=64),
)
def test_headers_claiming_huge_sizes(workdir, model_bytes, shapes, dtypes, offsets, claim, data):
    _, metadata = parts(model_bytes, workdir)
    metadata = dict(metadata, architecture=json.dumps(
        [{"type": "Dense", "in_features": claim, "out_features": claim}]))
    header = {"__metadata__": metadata}
    for i, shape in enumerate(shapes):
        header[f"0.{['weight', 'bias', 'x'][i]}"] = {
            "dtype": dtypes[i], "shape": shape, "data_offsets": offsets[2 * i: 2 * i + 2]}
    text = json.dumps(header).encode()
    result = load_hostile(workdir, struct.pack("<Q", len(text)) + text + data)
    assert isinstance(result, cr.ModelFileError)


@FUZZ
@given(name=st.sampled_from(["0.weight", "0.bias", "3.weight", "3.bias"]),
       dtype=st.sampled_from(["int8", "uint8", "int16", "int32", "int64", "uint64", "float16",
                              "float64", "bool"]))
def test_wrong_dtypes(workdir, model_bytes, name, dtype):
    tensors, metadata = parts(model_bytes, workdir)
    tensors[name] = tensors[name].astype(dtype)
    result = load_hostile(workdir, rebuild(tensors, metadata))
    assert isinstance(result, cr.ModelFileError)
    assert f"tensor {name!r} has dtype {dtype}" in str(result)


@FUZZ
@given(name=st.sampled_from(["0.weight", "0.bias", "3.weight", "3.bias"]),
       change=st.sampled_from(["missing", "reshaped", "resized", "renamed", "extra", "scalar"]),
       data=st.data())
def test_tensor_missing_or_reshaped(workdir, model_bytes, name, change, data):
    tensors, metadata = parts(model_bytes, workdir)
    t = tensors[name]
    if change == "missing":
        del tensors[name]
    elif change == "reshaped":
        shape = data.draw(st.sampled_from([(t.size,), (1, t.size), (t.size, 1), t.shape[::-1]]))
        if shape == t.shape:
            shape = (1, *shape)
        tensors[name] = t.reshape(shape)
    elif change == "resized":
        n = data.draw(st.integers(0, 40).filter(lambda n: n != t.size))
        tensors[name] = np.zeros(n, t.dtype)
    elif change == "renamed":
        tensors[name.replace(".", ".x")] = tensors.pop(name)
    elif change == "extra":
        tensors[name.replace("0.", "1.").replace("3.", "4.")] = t
    else:
        tensors[name] = np.zeros((), t.dtype)
    result = load_hostile(workdir, rebuild(tensors, metadata))
    assert isinstance(result, cr.ModelFileError)
    assert "tensor '" in str(result)  # the message names a tensor


@FUZZ
@given(key=st.sampled_from(["architecture", "loss", "optimizer", "dtype", "format",
                            "format_version"]),
       value=json_values.map(json.dumps) | st.text(max_size=30), keep_digest=st.booleans())
def test_metadata_fields_replaced(workdir, model_bytes, key, value, keep_digest):
    tensors, metadata = parts(model_bytes, workdir)
    metadata[key] = value
    if not keep_digest:
        metadata.pop(DIGEST_KEY)
    result = load_hostile(workdir, rebuild(tensors, metadata, refresh_digest=False))
    # Without a digest, an edit may still describe a valid model: that one may load.
    assert isinstance(result, (cr.ModelFileError, cr.Network))
    if keep_digest and isinstance(result, cr.Network):
        assert same_model(result, make_model())


@FUZZ
@given(layers=st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["Dense", "ReLU", "Dropout", "Sigmoid", "LeakyReLU", "Softmax",
                                  "Layer", "Network", "__main__.Evil", ""])},
        optional={"in_features": st.integers(-2, 2**63) | st.floats() | st.text(max_size=3),
                  "out_features": st.integers(-2, 2**63) | st.booleans(),
                  "bias": json_values, "p": st.floats(), "scale": st.floats(),
                  "negative_slope": json_values, "seed": st.integers(), "rng": json_values,
                  "init": st.text(max_size=10), "dtype": st.text(max_size=10)}),
    max_size=4))
def test_architecture_settings(workdir, model_bytes, layers):
    tensors, metadata = parts(model_bytes, workdir)
    metadata["architecture"] = json.dumps(layers)
    result = load_hostile(workdir, rebuild(tensors, metadata))
    assert isinstance(result, (cr.ModelFileError, cr.Network))


def test_format_version_1_files_load_with_a_warning_and_never_skip_a_digest(workdir, model_bytes):
    tensors, metadata = parts(model_bytes, workdir)
    # Version 1 (before digests): loads, but says it could not be verified.
    del metadata[DIGEST_KEY]
    metadata["format_version"] = "1"
    with pytest.warns(cr.UnverifiedFileWarning, match="without a SHA-256 digest"):
        assert same_model(load_hostile(workdir, rebuild(tensors, metadata, False)), make_model())
    # A version 1 file that has a digest gets it checked: a downgrade switches nothing off.
    tampered = dict(tensors, **{"0.bias": tensors["0.bias"] + 1})
    with_digest = dict(metadata, **{DIGEST_KEY: tensor_digest(tensors, metadata)})
    result = load_hostile(workdir, rebuild(tampered, with_digest, False))
    assert "do not match the SHA-256 digest" in str(result)
    # The current version without its digest is refused.
    metadata["format_version"] = "2"
    result = load_hostile(workdir, rebuild(tensors, metadata, False))
    assert "hostile.safetensors is corrupt: its SHA-256 digest ('sha256') is missing" in str(result)


generator_states = st.one_of(
    st.fixed_dictionaries({
        "bit_generator": st.sampled_from(["PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937",
                                          "numpy.random.PCG64", "", "builtins.eval"]),
        "state": st.dictionaries(st.sampled_from(["state", "inc", "key", "pos", "counter", "x"]),
                                 st.integers(-2, 2**130) | st.lists(st.integers(-1, 2**65),
                                                                    max_size=6), max_size=3),
        "has_uint32": st.integers(-1, 2), "uinteger": st.integers(-1, 2**33)}),
    st.builds(lambda key, pos: {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}},
              st.lists(st.integers(0, 1), min_size=624, max_size=624) | st.just([0] * 624),
              st.integers(-1, 700)),
    json_values,
)


@FUZZ
@given(field=st.sampled_from(["rng", "layer_rngs", "history", "fit", "epoch", "step",
                              "optimizer_steps"]),
       value=json_values, state=generator_states, layer=st.sampled_from(["2", "0", "9", "x"]))
def test_checkpoint_metadata_schemas(workdir, checkpoint_bytes, field, value, state, layer):
    """Any restored value is either valid (and then usable: a generator draws at once) or
    refused with ModelFileError; nothing else escapes, nothing hangs."""
    tensors, metadata = parts(checkpoint_bytes, workdir)
    if field == "rng":
        metadata["rng"] = json.dumps(state)
    elif field == "layer_rngs":
        metadata["layer_rngs"] = json.dumps({layer: state})
    else:
        metadata[field] = json.dumps(value)
    result = load_hostile(workdir, rebuild(tensors, metadata), load_checkpoint)
    if isinstance(result, cr.ModelFileError):
        return
    generator = result.generator()
    if generator is not None:
        generator.integers(0, 5, 10)  # an all-zero MT19937 state would loop here for ever
    net = make_model()
    result.restore(net)
    for index in result.layer_rng_states:
        net.layers[index].rng.integers(0, 5, 10)


# -- the corpus ------------------------------------------------------------------------

MANIFEST = json.loads((CORPUS / "manifest.json").read_text())


def test_corpus_manifest_lists_every_file():
    files = {p.name for p in CORPUS.iterdir()} - {"manifest.json", "make_corpus.py"}
    assert files == set(MANIFEST)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_file_is_refused(name, tmp_path, monkeypatch):
    expected = MANIFEST[name]
    path = CORPUS / name
    monkeypatch.chdir(tmp_path)  # where the pickle payload would leave its mark
    if expected["error"] == "IDXFormatError":
        with pytest.raises(IDXFormatError, match=expected["message"]):
            read_idx(path)
        return
    data = path.read_bytes()
    loader = load_checkpoint if name.startswith("checkpoint_") else cr.load
    result = load_hostile(tmp_path, data, loader)
    assert isinstance(result, cr.ModelFileError)
    assert expected["message"] in str(result)
    assert list(tmp_path.iterdir()) == [tmp_path / "hostile.safetensors"]  # nothing ran
