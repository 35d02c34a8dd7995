"""Write the hostile-file corpus: small model, checkpoint and IDX files that must be refused.

Run from the repository root: ``python tests/data/corpus/make_corpus.py`` (it writes
the files not yet present and the manifest).
Each file's expected outcome (the error type and a fragment of its message)
goes to ``manifest.json``; ``tests/test_io_fuzz.py`` checks them all. The
files are committed, so the test does not depend on this script staying
byte-for-byte reproducible; it documents how each was made.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import save as to_bytes

import chainrule as cr
from chainrule.checkpoint import save_checkpoint
from chainrule.io import DIGEST_KEY, tensor_digest

HERE = Path(__file__).parent


def raw_safetensors(header: dict, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file written by hand: 8-byte little-endian header size, JSON, data."""
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def model_parts() -> tuple[dict[str, np.ndarray], dict[str, str]]:
    net = cr.Network([cr.Dense(4, 3, seed=0), cr.ReLU(), cr.Dense(3, 2, seed=1)])
    path = HERE / "_valid.tmp"
    net.save(path)
    tensors, metadata = cr.io.read_safetensors(path)
    path.unlink()
    return tensors, metadata


def model_file(change=None, refresh_digest: bool = True) -> bytes:
    """A valid model file, edited by ``change(tensors, metadata)`` as a buggy writer would."""
    tensors, metadata = model_parts()
    if change is not None:
        change(tensors, metadata)
    if refresh_digest and DIGEST_KEY in metadata:
        metadata[DIGEST_KEY] = tensor_digest(tensors, metadata)
    return to_bytes(tensors, metadata=metadata)


def checkpoint_file(change) -> bytes:
    net = cr.Network([cr.Dense(2, 2, seed=0), cr.Dropout(0.5, seed=1)], optimizer=cr.Adam())
    net.train_step(np.ones((3, 2)), np.zeros((3, 2)))  # so Adam has moments to save
    path = HERE / "_ckpt.tmp"
    save_checkpoint(path, net, epoch=1, rng=np.random.default_rng(0))
    tensors, metadata = cr.io.read_safetensors(path)
    path.unlink()
    change(tensors, metadata)
    metadata[DIGEST_KEY] = tensor_digest(tensors, metadata)
    return to_bytes(tensors, metadata=metadata)


def architecture(layers) -> callable:
    return lambda t, m: m.update(architecture=json.dumps(layers, separators=(",", ":")))


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


MODEL = "ModelFileError"
IDX = "IDXFormatError"


def corpus() -> dict[str, tuple[bytes, str, str]]:
    """name -> (bytes, error type, message fragment)."""
    valid = model_file()
    half = len(valid) // 2
    files = {
        "empty.safetensors": (b"", MODEL, "header too small"),
        "random_bytes.safetensors": (
            np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes(), MODEL,
            "not a readable safetensors file"),
        "header_size_2_63.safetensors": (struct.pack("<Q", 2**63) + b"{}", MODEL, "header too large"),
        "header_size_beyond_file.safetensors": (raw_safetensors({}, length=10**6), MODEL,
                                                "not a readable safetensors file"),
        "shape_claims_2_62_elements.safetensors": (
            raw_safetensors({"0.weight": {"dtype": "F32", "shape": [2**31, 2**31],
                                          "data_offsets": [0, 16]}}, b"\0" * 16),
            MODEL, "not a readable safetensors file"),
        "offsets_beyond_data.safetensors": (
            raw_safetensors({"0.weight": {"dtype": "F32", "shape": [2**20],
                                          "data_offsets": [0, 2**22]}}, b"\0" * 16),
            MODEL, "not a readable safetensors file"),
        "overlapping_tensors.safetensors": (
            raw_safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                             "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                            b"\0" * 8), MODEL, "invalid offset"),
        # NumPy reads these dtypes only once ml_dtypes is imported (onnx imports it):
        # refused either way, by safetensors or by the dtype check.
        "bfloat16_tensor.safetensors": (
            raw_safetensors({"__metadata__": model_parts()[1],
                             "0.weight": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}},
                            b"\0" * 4), MODEL, "bfloat16"),
        "float8_tensor.safetensors": (
            raw_safetensors({"__metadata__": model_parts()[1],
                             "0.weight": {"dtype": "F8_E4M3", "shape": [2],
                                          "data_offsets": [0, 2]}}, b"\0" * 2),
            MODEL, "float8_e4m3fn"),
        "truncated_in_data.safetensors": (valid[: len(valid) - 7], MODEL,
                                          "not a readable safetensors file"),
        "truncated_in_header.safetensors": (valid[:half // 4], MODEL,
                                            "not a readable safetensors file"),
        "one_bit_flipped_in_weights.safetensors": (flip_bit(valid, 8 * len(valid) - 3), MODEL,
                                                   "do not match the SHA-256 digest"),
        "int32_weights.safetensors": (
            model_file(lambda t, m: t.update({"0.weight": t["0.weight"].astype(np.int32)})),
            MODEL, "tensor '0.weight' has dtype int32, the model's is float32"),
        "float64_weights_in_float32_model.safetensors": (
            model_file(lambda t, m: t.update({"2.bias": t["2.bias"].astype(np.float64)})),
            MODEL, "tensor '2.bias' has dtype float64"),
        "missing_tensor.safetensors": (model_file(lambda t, m: t.pop("2.bias")), MODEL,
                                       "missing tensor '2.bias'"),
        "reshaped_tensor.safetensors": (
            model_file(lambda t, m: t.update({"0.weight": t["0.weight"].reshape(4, 3)})),
            MODEL, r"tensor '0.weight' has shape (4, 3), expected (3, 4)"),
        "extra_tensor.safetensors": (
            model_file(lambda t, m: t.update({"1.weight": np.zeros(3, np.float32)})),
            MODEL, "unexpected tensor '1.weight'"),
        "nan_weight.safetensors": (
            model_file(lambda t, m: t["0.bias"].__setitem__(1, np.nan)),
            MODEL, "tensor '0.bias' contains NaN"),
        "dense_claims_10_12_parameters.safetensors": (
            model_file(architecture([{"type": "Dense", "in_features": 10**6,
                                      "out_features": 10**6}])),
            MODEL, "tensor '0.weight' has shape (3, 4), expected (1000000, 1000000)"),
        "layer_type_names_a_function.safetensors": (
            model_file(architecture([{"type": "os.system", "command": "echo pwned"}])),
            MODEL, "unknown type 'os.system'"),
        "dense_with_huge_dtype_setting.safetensors": (
            model_file(architecture([{"type": "Dense", "in_features": 4, "out_features": 3,
                                      "dtype": "V1000000000"}, {"type": "ReLU"},
                                     {"type": "Dense", "in_features": 3, "out_features": 2}])),
            MODEL, "unexpected setting 'dtype'"),
        "architecture_nested_5000_deep.safetensors": (
            model_file(lambda t, m: m.update(architecture="[" * 5000 + "]" * 5000)),
            MODEL, "invalid architecture metadata"),
        "architecture_with_1001_layers.safetensors": (
            model_file(architecture([{"type": "Dense", "in_features": 4, "out_features": 3},
                                     {"type": "ReLU"},
                                     {"type": "Dense", "in_features": 3, "out_features": 2}]
                                    + [{"type": "ReLU"}] * 998)),
            MODEL, "has 1001 layers; at most 1000 are read"),
        "optimizer_with_object_setting.safetensors": (
            model_file(lambda t, m: m.update(optimizer='{"type": "SGD", "lr": {"x": 1}}')),
            MODEL, "optimizer setting 'lr' is not a plain value"),
        "float128_dtype_metadata.safetensors": (
            model_file(lambda t, m: m.update(dtype="float128")), MODEL,
            "dtype must be 'float32' or 'float64'"),
        "newer_format_version.safetensors": (
            model_file(lambda t, m: m.update(format_version="9", chainrule_version="9.0")), MODEL,
            "model format version 9 by chainrule 9.0; this chainrule"),
        "digest_missing.safetensors": (
            model_file(lambda t, m: m.pop(DIGEST_KEY), refresh_digest=False), MODEL,
            "SHA-256 digest ('sha256') is missing"),
        "plain_state_dict.safetensors": (
            to_bytes({"0.weight": np.ones((3, 4), np.float32)}), MODEL, "no chainrule metadata"),
        # A pickle (what torch.save writes) whose loading would run a shell
        # command; written as bytes, the protocol-0 opcodes spelled out.
        "pickle_payload.pt": (b"cos\nsystem\n(S'touch chainrule-corpus-pwned'\ntR.", MODEL,
                              "not a readable safetensors file"),
        "checkpoint_newer_format_version.safetensors": (
            checkpoint_file(lambda t, m: m.update(format_version="7")), MODEL,
            "checkpoint format version 7"),
        "checkpoint_unknown_bit_generator.safetensors": (
            checkpoint_file(lambda t, m: m.update(
                layer_rngs=json.dumps({"1": {"bit_generator": "builtins.eval"}}))),
            MODEL, "unsupported random generator state 'builtins.eval'"),
        "checkpoint_pcg64_state_out_of_range.safetensors": (
            checkpoint_file(lambda t, m: m.update(rng=json.dumps(
                {"bit_generator": "PCG64", "state": {"state": -1, "inc": 2**200},
                 "has_uint32": 0, "uinteger": 0}))),
            MODEL, "invalid PCG64 generator state"),
        "checkpoint_missing_adam_moment.safetensors": (
            checkpoint_file(lambda t, m: t.pop("optimizer.0.weight.v")), MODEL,
            "missing optimizer tensor 'optimizer.0.weight.v'"),
        # Restored values that would hang, crash or mislead a resumed run.
        "checkpoint_mt19937_all_zero_state.safetensors": (
            checkpoint_file(lambda t, m: m.update(rng=json.dumps(
                {"bit_generator": "MT19937", "state": {"key": [0] * 624, "pos": 624}}))),
            MODEL, "invalid MT19937 generator state: it is all zeros"),
        "checkpoint_epoch_loss_null.safetensors": (
            checkpoint_file(lambda t, m: m.update(step="1", fit=json.dumps(
                {"batch_size": 2, "samples": 6, "epoch_loss": None}))),
            MODEL, "fit setting 'epoch_loss' is invalid: None"),
        "checkpoint_negative_adam_second_moment.safetensors": (
            checkpoint_file(lambda t, m: t["optimizer.0.weight.v"].__setitem__((0, 0), -1.0)),
            MODEL, "tensor 'optimizer.0.weight.v' must not be negative"),
        "checkpoint_history_beyond_its_epoch.safetensors": (
            checkpoint_file(lambda t, m: m.update(
                history='{"epochs": [0, 1, 2], "metrics": {"loss": [1, 1, 1]}}')),
            MODEL, "history epochs must increase and stay below epoch 1"),
        # A downgrade to format 1 keeps a digest that is there checked.
        "format_1_with_a_wrong_digest.safetensors": (
            model_file(lambda t, m: (m.update(format_version="1"),
                                     m.update(sha256="0" * 64)), refresh_digest=False),
            MODEL, "do not match the SHA-256 digest"),
        # Quoted values are cut to 80 characters.
        "layer_type_of_100000_characters.safetensors": (
            model_file(architecture([{"type": "T" * 100_000}])),
            MODEL, "... (100,000 characters)"),
        # Not safetensors at all: said what it looks like.
        "png_picture.safetensors": (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x1c\x00\x00\x00\x1c\x08\x00",
            MODEL, "looks like a PNG picture"),
        # Headers safetensors itself might take: refused by the bounded reader.
        "duplicate_tensor_name.safetensors": (
            struct.pack("<Q", 107) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
            b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' + b"\0" * 8,
            MODEL, "duplicate key 'a'"),
        "tensor_name_of_300_characters.safetensors": (
            raw_safetensors({"n" * 300: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                            b"\0" * 4), MODEL, "longer than 256 characters"),
        "bytes_after_the_last_tensor.safetensors": (
            raw_safetensors({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                            b"\0" * 12), MODEL, "the tensors cover 4 bytes of data but the file holds 12"),
        # IDX files (read_idx): headers that lie about sizes.
        "idx_claims_4e9_images.idx": (bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**32 - 1, 28, 28)
                                      + b"\0" * 100, IDX, "more than max_bytes"),
        "idx_unknown_type_code.idx": (bytes([0, 0, 0x42, 1]) + struct.pack(">I", 4) + b"\0" * 4,
                                      IDX, "type"),
        "idx_gzip_truncated.idx.gz": (
            gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 1000) + bytes(range(250)) * 4,
                          mtime=0)[:150],
            IDX, "corrupt gzip stream"),
    }
    return files


def main() -> None:
    """Write files not yet in the corpus (committed ones stay byte for byte) and the manifest."""
    manifest = {}
    for name, (data, error, fragment) in sorted(corpus().items()):
        if not (HERE / name).exists():
            (HERE / name).write_bytes(data)
        manifest[name] = {"error": error, "message": fragment}
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(manifest)} files to {HERE}")


if __name__ == "__main__":
    main()
