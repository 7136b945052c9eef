"""Property-based tests of the data layer: valid data round-trips exactly, and any bad input
becomes a DatasetError (never another exception from deep inside numpy or h5py)."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bearl.data import load_dataset
from bearl.data.d4rl import read_d4rl, write_d4rl
from bearl.data.dataset import Dataset
from bearl.errors import DatasetError

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def datasets(draw):
    n = draw(st.integers(1, 40))
    obs_dim = draw(st.integers(1, 4))
    act_dim = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    ends = rng.random(n) < 0.2
    term = ends & (rng.random(n) < 0.5)
    return Dataset(
        rng.normal(size=(n, obs_dim)),
        rng.uniform(-1, 1, (n, act_dim)),
        rng.normal(size=n),
        rng.normal(size=(n, obs_dim)),
        term,
        ends & ~term,
    )


@SETTINGS
@given(ds=datasets())
def test_d4rl_round_trip_is_exact(tmp_path, ds):
    path = tmp_path / "rt.hdf5"
    write_d4rl(ds, path)
    back = read_d4rl(path)
    for f in Dataset.FIELDS:
        np.testing.assert_array_equal(getattr(back, f), getattr(ds, f))
    path.unlink()


@SETTINGS
@given(
    ds=datasets(),
    field=st.sampled_from(["observations", "actions", "rewards", "next_observations"]),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    data=st.data(),
)
def test_non_finite_values_name_the_field(ds, field, bad, data):
    arrays = {
        f: np.array(
            getattr(ds, f), dtype=np.float64 if f not in ("terminals", "timeouts") else bool
        )
        for f in Dataset.FIELDS
    }
    flat = arrays[field].reshape(-1)
    flat[data.draw(st.integers(0, flat.size - 1))] = bad
    with pytest.raises(DatasetError, match=field):
        Dataset(*(arrays[f] for f in Dataset.FIELDS))


@SETTINGS
@given(ds=datasets(), field=st.sampled_from(list(Dataset.FIELDS)), cut=st.integers(1, 5))
def test_ragged_lengths_are_dataset_errors(ds, field, cut):
    arrays = {f: getattr(ds, f) for f in Dataset.FIELDS}
    arrays[field] = np.concatenate([arrays[field], arrays[field][:1].repeat(cut, axis=0)])
    with pytest.raises(DatasetError):
        Dataset(*(arrays[f] for f in Dataset.FIELDS))


@SETTINGS
@given(
    blob=st.binary(min_size=1, max_size=300),
    suffix=st.sampled_from([".hdf5", ".pkl", ".npy", ".npz", ".gz", ".dat"]),
)
def test_random_bytes_never_crash_a_loader(tmp_path, blob, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(blob)
    with pytest.raises(DatasetError, match="junk"):
        load_dataset(str(path))


@SETTINGS
@given(ds=datasets(), cut=st.floats(0.05, 0.95))
def test_truncated_files_are_dataset_errors(tmp_path, ds, cut):
    blob = gzip.compress(pickle.dumps({f: getattr(ds, f) for f in Dataset.FIELDS}))
    path = tmp_path / "buffer.pkl"
    path.write_bytes(blob[: max(1, int(len(blob) * cut))])
    with pytest.raises(DatasetError, match="buffer.pkl"):
        load_dataset(str(path))
