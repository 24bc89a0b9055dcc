import pickle

import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.checkpoint import CheckpointError, read

from conftest import AVAILABLE, BACKEND_DEVICES


def trained(seed=0, **kw):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(96, 6)), rng.integers(0, 3, 96)
    model = mlp.build_mlp([6, 8, 3], "tanh", batch_norm=True, seed=seed, **kw)
    model.fit(X, y, epochs=2, batch_size=16, optimizer=mlp.Adam(1e-2, schedule=mlp.StepDecay(0.5, 5)))
    return model, X, y


def test_round_trip_is_exact_and_keeps_config_and_optimizer(tmp_path):
    model, X, y = trained()
    path = mlp.save_checkpoint(model, tmp_path / "m.safetensors", optimizer=model.optimizer, extra={"epoch": 2})
    ck = mlp.load_checkpoint(path)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(ck.model.state_dict()[name], value)
    assert ck.extra == {"epoch": 2}
    assert ck.model.config() == model.config()
    assert ck.optimizer.step_count == model.optimizer.step_count
    assert ck.optimizer.config() == model.optimizer.config()
    np.testing.assert_array_equal(ck.model.predict_proba(X), model.predict_proba(X))


def test_resuming_from_a_checkpoint_matches_uninterrupted_training(tmp_path):
    model, X, y = trained(seed=1, dtype="float64")
    mlp.save_checkpoint(model, tmp_path / "m.safetensors", optimizer=model.optimizer)
    model.fit(X, y, epochs=1, batch_size=16, shuffle=False)
    resumed = mlp.load_checkpoint(tmp_path / "m.safetensors").model
    resumed.loss = model.loss
    resumed.fit(X, y, epochs=1, batch_size=16, shuffle=False)
    np.testing.assert_array_equal(resumed.flat_params, model.flat_params)


@pytest.mark.parametrize("backend", [b for b in ("array_api_strict", "torch") if b in AVAILABLE])
def test_checkpoint_loads_onto_another_backend(tmp_path, backend):
    model, X, _ = trained()
    mlp.save_checkpoint(model, tmp_path / "m.safetensors")
    other = mlp.load_checkpoint(tmp_path / "m.safetensors", backend=backend, device=BACKEND_DEVICES[backend]).model
    assert other.be.name == backend
    other.loss = model.loss
    np.testing.assert_allclose(other.predict_proba(X), model.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_saving_again_keeps_the_previous_checkpoint(tmp_path):
    model, X, y = trained()
    path = tmp_path / "m.safetensors"
    mlp.save_checkpoint(model, path)
    first = model.state_dict()
    model.fit(X, y, epochs=1)
    mlp.save_checkpoint(model, path)
    prev = mlp.load_checkpoint(str(path) + ".prev").model.state_dict()
    for name in first:
        np.testing.assert_array_equal(prev[name], first[name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "m.safetensors.prev"]  # no temp files


def test_a_directory_that_refuses_writes_raises_and_keeps_the_previous_file(tmp_path, monkeypatch):
    """As root (how CI runs) permissions do not refuse, so the refusal comes from mkstemp, where the OS gives it."""
    import os
    import tempfile

    model, _, _ = trained()
    path = mlp.save_checkpoint(model, tmp_path / "m.safetensors")
    before = path.read_bytes()

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))
    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError):
        mlp.save_checkpoint(model, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    if os.geteuid() != 0:  # and the real thing where permissions apply
        tmp_path.chmod(0o500)
        try:
            with pytest.raises(PermissionError):
                mlp.save_checkpoint(model, tmp_path / "other.safetensors")
        finally:
            tmp_path.chmod(0o700)


def test_corrupted_truncated_and_foreign_files_are_rejected(tmp_path):
    model, _, _ = trained()
    path = mlp.save_checkpoint(model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    for cut in range(0, len(data), max(1, len(data) // 300)):  # truncation
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError):
            read(bad)
    # single-bit flips: test_a_single_bit_flip_anywhere_is_refused_or_harmless
    bad.write_bytes(pickle.dumps({"W": np.zeros(3)}))
    with pytest.raises(CheckpointError):
        read(bad)
    huge_header = (10**12).to_bytes(8, "little") + b"{}"
    bad.write_bytes(huge_header)
    with pytest.raises(CheckpointError, match="header length"):
        read(bad)
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "missing.safetensors")


def test_a_single_bit_flip_anywhere_is_refused_or_harmless(tmp_path):
    """1,000 random single-bit flips over the whole file, header and metadata included."""
    from mlp_backend.checkpoint import CheckpointError, read

    model = mlp.build_mlp([6, 5, 3], "relu", seed=0)
    model.fit(np.random.default_rng(0).normal(size=(20, 6)), np.arange(20) % 3, epochs=1, batch_size=5)
    path = tmp_path / "m.safetensors"
    mlp.save_checkpoint(model, path, optimizer=model.optimizer, extra={"scaling": {"mean": 0.5}})
    good_tensors, good_meta = read(path)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    refused = harmless = 0
    for position in rng.integers(0, len(data), 1000):
        bit = 1 << int(rng.integers(0, 8))
        data[position] ^= bit
        bad = tmp_path / "flipped.safetensors"
        bad.write_bytes(bytes(data))
        data[position] ^= bit
        try:
            tensors, meta = read(bad)
        except CheckpointError:
            refused += 1
            continue
        assert meta == good_meta and tensors.keys() == good_tensors.keys()
        for name in tensors:
            np.testing.assert_array_equal(tensors[name], good_tensors[name])
        harmless += 1
    assert refused + harmless == 1000 and refused > 900, (refused, harmless)


def test_metadata_is_covered_by_the_digest(tmp_path):
    """relu -> selu in the stored configuration (one bit) is refused, not loaded silently."""
    from mlp_backend.checkpoint import CheckpointError

    path = tmp_path / "m.safetensors"
    mlp.save_checkpoint(mlp.build_mlp([4, 3, 2], "relu"), path)
    data = path.read_bytes()
    assert data.count(b'\\"relu\\"') == 1
    path.write_bytes(data.replace(b'\\"relu\\"', b'\\"selu\\"'))
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        mlp.load_checkpoint(path)


def test_non_finite_or_recast_weights_are_refused(tmp_path):
    from safetensors.numpy import save_file

    from mlp_backend.checkpoint import CheckpointError, _digest, read

    path = tmp_path / "m.safetensors"
    model = mlp.build_mlp([4, 3, 2], "relu")
    mlp.save_checkpoint(model, path)
    tensors, meta = read(path)

    def rewrite(name, value):  # a well-formed file with a valid digest over the changed tensor
        changed = {**tensors, name: value}
        save_file(changed, path, metadata={**meta, "sha256": _digest(changed, meta)})

    w = tensors["param/dense0.W"]
    rewrite("param/dense0.W", np.where(np.arange(w.size).reshape(w.shape) == 0, np.nan, w).astype(w.dtype))
    with pytest.raises(CheckpointError, match="dense0.W holds NaN"):
        mlp.load_checkpoint(path)
    assert np.isnan(mlp.load_checkpoint(path, allow_nonfinite=True).model.get_parameter("dense0.W")[0, 0])
    rewrite("param/dense0.W", w.astype(np.int64))
    with pytest.raises(CheckpointError, match="dense0.W is int64, the model's dtype is float32"):
        mlp.load_checkpoint(path)


@pytest.mark.parametrize("field,value,message", [
    ("model_config", '{"layers": [{"type": "Dense", "in_features": 1000000000, "out_features": 3}], '
                     '"dtype": "float32"}', "its layers have parameters|has shape"),
    ("model_config", "[" * 100_000 + "]" * 100_000, "field model_config: not valid JSON"),
    ("extra", "[1, 2]", "field extra: expected a JSON dict, got list"),
    ("optimizer", "{broken", "field optimizer: not valid JSON"),
    ("optimizer", '{"class": "Adam", "config": {}, "step_count": -3, "lr_scale": 1.0}',
     "field optimizer.step_count must be a non-negative integer"),
    ("loss", '{"name": "hinge"}', "field loss: not a loss"),
])
def test_every_metadata_defect_is_one_checkpoint_error_naming_the_field(tmp_path, field, value, message):
    """Files with a valid digest but lying metadata: refused before anything is allocated."""
    from safetensors.numpy import save_file

    from mlp_backend.checkpoint import CheckpointError, _digest, read

    path = tmp_path / "m.safetensors"
    model = mlp.build_mlp([4, 3], "relu")
    model.fit(np.zeros((6, 4)), np.arange(6) % 3, epochs=1)
    mlp.save_checkpoint(model, path, optimizer=model.optimizer)
    tensors, meta = read(path)
    meta = {**meta, field: value}
    save_file(tensors, path, metadata={**meta, "sha256": _digest(tensors, meta)})
    with pytest.raises(CheckpointError, match=message):
        mlp.load_checkpoint(path)


def test_a_promotion_killed_between_its_link_and_rename_does_not_block_the_next(tmp_path):
    """A pending checkpoint becomes the checkpoint, the old one its .prev, even where a process killed mid-promotion
    left its temporary hard link behind."""
    from mlp_backend import checkpoint

    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"old")
    checkpoint.pending_path(path).write_bytes(b"new")
    stale = tmp_path / "checkpoint.safetensors.pending.prev"
    stale.write_bytes(b"older")
    checkpoint.promote(path)
    assert path.read_bytes() == b"new" and (tmp_path / "checkpoint.safetensors.prev").read_bytes() == b"old"
    assert not stale.exists() and not checkpoint.pending_path(path).exists()
