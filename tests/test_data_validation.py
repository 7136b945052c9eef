"""Every way a dataset file can be wrong gives a DatasetError naming the file and the field."""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path

import h5py
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer
from numpy.lib import format as npy_format

from bearl.data import load_dataset
from bearl.data.d4rl import write_d4rl
from bearl.data.dataset import Dataset
from bearl.data.minari_io import read_minari
from bearl.errors import DatasetError

from conftest import small_arrays

N = 8


def _arrays(obs_dim: int = 3, act_dim: int = 1) -> dict[str, np.ndarray]:
    return small_arrays(N, obs_dim, act_dim)


def _write_h5(path: Path, arrays: dict) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def _error(source, **kwargs) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        load_dataset(source, **kwargs)
    return info.value


def _assert_names(err: DatasetError, path: Path, field: str | None = None) -> None:
    assert str(path) in str(err)
    if field is not None:
        assert err.field == field
        assert f"'{field}'" in str(err)


# -- D4RL HDF5 ----------------------------------------------------------------------------------
def test_missing_key(tmp_path):
    arrays = _arrays()
    del arrays["actions"]
    path = _write_h5(tmp_path / "no_actions.hdf5", arrays)
    err = _error(path)
    _assert_names(err, path, "actions")
    assert "missing" in str(err)


def test_mismatched_lengths(tmp_path):
    arrays = _arrays()
    arrays["rewards"] = arrays["rewards"][:-2]
    path = _write_h5(tmp_path / "short.hdf5", arrays)
    err = _error(path)
    _assert_names(err, path, "rewards")
    assert "6 rows" in str(err) and "8" in str(err)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("field", ["observations", "rewards", "next_observations"])
def test_nan_and_inf(tmp_path, bad, field):
    arrays = _arrays()
    arrays[field][5] = bad
    path = _write_h5(tmp_path / "nonfinite.hdf5", arrays)
    err = _error(path)
    _assert_names(err, path, field)
    assert "NaN/Inf" in str(err) and "row 5" in str(err)


def test_nan_in_a_file_without_next_observations(tmp_path):
    arrays = _arrays()
    del arrays["next_observations"]
    arrays["actions"][2, 0] = np.nan
    path = _write_h5(tmp_path / "nonfinite.hdf5", arrays)
    _assert_names(_error(path), path, "actions")


def test_string_array(tmp_path):
    arrays = _arrays()
    arrays["rewards"] = np.array([b"a"] * N)
    path = _write_h5(tmp_path / "strings.hdf5", arrays)
    err = _error(path)
    _assert_names(err, path, "rewards")
    assert "dtype" in str(err)


def test_flags_that_are_not_zero_or_one(tmp_path):
    arrays = _arrays()
    arrays["terminals"] = np.full(N, 2.0, np.float32)
    path = _write_h5(tmp_path / "flags.hdf5", arrays)
    _assert_names(_error(path), path, "terminals")


def test_empty_dataset(tmp_path):
    arrays = {k: v[:0] for k, v in _arrays().items()}
    path = _write_h5(tmp_path / "zero_rows.hdf5", arrays)
    err = _error(path)
    _assert_names(err, path)
    assert "empty" in str(err)


def test_hdf5_without_datasets(tmp_path):
    path = _write_h5(tmp_path / "nothing.hdf5", {})
    assert "no datasets" in str(_error(path))


def test_empty_file(tmp_path):
    for name in ("empty.hdf5", "empty.pkl", "empty"):
        path = tmp_path / name
        path.write_bytes(b"")
        err = _error(path)
        _assert_names(err, path)
        assert "empty file" in str(err)


def test_truncated_hdf5(tmp_path):
    path = tmp_path / "truncated.hdf5"
    write_d4rl(Dataset(**_arrays()), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    err = _error(path)
    _assert_names(err, path)
    assert "not a readable HDF5 file (truncated or corrupt?)" in str(err)


def test_random_bytes(tmp_path):
    junk = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    junk = b"junk" + junk  # no magic bytes of any format
    path = tmp_path / "random.bin"
    path.write_bytes(junk)
    err = _error(path)
    _assert_names(err, path)
    assert "unrecognised file format" in str(err) and "D4RL HDF5" in str(err)
    named_hdf5 = tmp_path / "random.hdf5"
    named_hdf5.write_bytes(junk)
    assert "not a readable HDF5 file" in str(_error(named_hdf5))


def test_dims_that_do_not_fit_the_env(tmp_path):
    path = write_d4rl(Dataset(**_arrays(obs_dim=5)), tmp_path / "wide.hdf5")
    err = _error(path, env="Pendulum-v1")
    _assert_names(err, path, "observations")
    assert "Pendulum-v1" in str(err)

    path = write_d4rl(Dataset(**_arrays(act_dim=2)), tmp_path / "two_actions.hdf5")
    _assert_names(_error(path, env="pendulum"), path, "actions")

    path = write_d4rl(Dataset(**_arrays()), tmp_path / "fits.hdf5")
    ds = load_dataset(path, env="pendulum")
    assert ds.info.env_name == "Pendulum-v1"
    assert ds.info.ref_min_score is None  # no D4RL reference scores for Pendulum


# -- names --------------------------------------------------------------------------------------
def test_unknown_name_suggests_close_matches():
    err = _error("hoper-medium")
    assert "hoper-medium" in str(err) and "unknown dataset" in str(err)
    assert "did you mean hopper-medium" in str(err)
    assert "no such file" in str(_error("./missing/data.hdf5"))


def test_d4rl_name_absent_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    err = _error("hopper-medium-replay-v2")
    message = str(err)
    assert "hopper_medium_replay-v2.hdf5" in message and str(tmp_path) in message
    assert "'hopper-medium-replay'" in message
    assert "bearl data make hopper-medium-replay" in message

    write_d4rl(Dataset(**_arrays(obs_dim=11, act_dim=3)), tmp_path / "hopper_medium_replay-v2.hdf5")
    ds = load_dataset("hopper-medium-replay-v2")
    assert ds.info.source == str(tmp_path / "hopper_medium_replay-v2.hdf5")


def test_missing_minari_id(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    err = _error("minari:mujoco/hopper/medium-v0")
    message = str(err)
    assert "mujoco/hopper/medium-v0" in message
    assert str(tmp_path) in message and "MINARI_DATASETS_PATH" in message
    assert "`minari download mujoco/hopper/medium-v0`" in message  # the command line's way
    assert "download=True" in message  # Python's


def _three_episode_minari(root: Path) -> Path:
    """A Pendulum Minari dataset of episodes of 4, 2 and 5 steps; returns its HDF5 file."""
    buffers = []
    for i, t in enumerate((4, 2, 5)):
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=np.zeros((t + 1, 3), np.float32),
                actions=np.zeros((t, 1), np.float32),
                rewards=np.zeros(t),
                terminations=np.zeros(t, bool),
                truncations=np.eye(1, t, t - 1, dtype=bool)[0],
                infos={},
            )
        )
    minari.create_dataset_from_buffers(
        "bad-v0", buffers, env="Pendulum-v1", algorithm_name="x", data_format="hdf5"
    )
    return root / "bad-v0" / "data" / "main_data.hdf5"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_minari_episode_with_misaligned_lengths(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with h5py.File(_three_episode_minari(tmp_path), "a") as f:
        del f["episode_2/observations"]
        f["episode_2/observations"] = np.zeros((5, 3), np.float32)  # 5 observations, 5 actions
    with pytest.raises(DatasetError) as info:
        read_minari("bad-v0")
    assert "episode 2" in str(info.value) and "minari:bad-v0" in str(info.value)
    assert info.value.field == "observations"

    folder = tmp_path / "not_minari"
    folder.mkdir()
    _assert_names(_error(folder), folder)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# how a file of a Minari dataset is broken -> (the file named, words of the message)
MINARI_DAMAGE = {
    "metadata that is not json": (
        lambda data: (data / "metadata.json").write_text('{"total_steps": 11,'),
        "metadata.json",
        "not valid JSON (JSONDecodeError:",
    ),
    "metadata that is not utf-8": (
        lambda data: (data / "metadata.json").write_bytes(b"\x80{}"),
        "metadata.json",
        "not valid JSON (UnicodeDecodeError:",
    ),
    "metadata that is a list": (
        lambda data: (data / "metadata.json").write_text("[1, 2]"),
        "metadata.json",
        "not a JSON object of metadata (a list)",
    ),
    "metadata without data_format": (
        lambda data: (data / "metadata.json").write_text('{"total_steps": 11}'),
        "metadata.json",
        "field 'data_format': missing",
    ),
    "truncated main_data.hdf5": (
        lambda data: _truncate(data / "main_data.hdf5"),
        "main_data.hdf5",
        "not a readable HDF5 file (truncated or corrupt?)",
    ),
    "missing main_data.hdf5": (
        lambda data: (data / "main_data.hdf5").unlink(),
        "main_data.hdf5",
        "missing",
    ),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("by", ["folder", "id"])
@pytest.mark.parametrize("damage", sorted(MINARI_DAMAGE))
def test_a_broken_minari_dataset_names_the_broken_file(tmp_path, monkeypatch, damage, by):
    """The error starts with the file inside the dataset's folder that is broken, not the folder
    with minari's exception."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    data = _three_episode_minari(tmp_path).parent
    breaks, name, words = MINARI_DAMAGE[damage]
    breaks(data)
    err = _error(data.parent if by == "folder" else "minari:bad-v0")
    assert str(err).startswith(f"{data / name}: "), str(err)
    assert words in str(err)
    assert "\n" not in str(err)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_episode_that_hdf5_cannot_read_names_the_data_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    main = _three_episode_minari(tmp_path)

    def damaged(self):
        raise OSError("Unable to synchronously open object (bad object header version number)")
        yield

    monkeypatch.setattr(minari.MinariDataset, "iterate_episodes", damaged)
    for source in (main.parent.parent, "minari:bad-v0"):
        err = str(_error(source))
        assert err.startswith(f"{main}: an episode could not be read (OSError: "), err


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "key,value,message",
    [
        ("observations", np.zeros((3, 4), np.float32), "episode 1 has observation/action widths"),
        ("rewards", np.zeros((2, 2)), "episode 1 has 4 rewards for 2 steps"),
        ("observations", np.zeros((3, 2, 2), np.float32), "only flat (vector) spaces"),
        ("actions", np.array([[b"a"], [b"b"]]), "episode 1 has dtype |S1"),
    ],
)
def test_minari_episode_with_other_shapes(tmp_path, monkeypatch, key, value, message):
    """Episodes are read straight into one matrix: a shape that does not fit is named, never a
    numpy broadcasting error."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with h5py.File(_three_episode_minari(tmp_path), "a") as f:
        del f[f"episode_1/{key}"]
        f[f"episode_1/{key}"] = value
    with pytest.raises(DatasetError) as info:
        read_minari("bad-v0")
    assert message in str(info.value) and "minari:bad-v0" in str(info.value)


# -- original buffers ---------------------------------------------------------------------------
def test_buffer_without_next_observations(tmp_path):
    arrays = _arrays()
    del arrays["next_observations"]
    path = tmp_path / "buffer.npz"
    np.savez(path, **arrays)
    _assert_names(_error(path), path, "next_observations")


def test_buffer_that_is_not_a_dict(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    assert "expected a dict of arrays" in str(_error(path))
    path = tmp_path / "array.npy"
    np.save(path, np.zeros((3, 2)))
    assert "expected a dict of arrays" in str(_error(path))


def test_npz_with_object_member_is_refused(tmp_path):
    arrays = _arrays()
    arrays["rewards"] = np.array([{"a": 1}] * N, dtype=object)
    path = tmp_path / "objects.npz"
    np.savez(path, **arrays)
    err = _error(path)
    _assert_names(err, path, "rewards")
    assert "refusing" in str(err)


def _make_marker(path: str) -> None:
    Path(path).touch()


class _Evil:
    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return (self.call, (self.arg,))


def _evil_payloads(marker: Path) -> list[object]:
    """Pickles that would create ``marker`` if anything in them were called."""
    return [
        _Evil(_make_marker, str(marker)),
        _Evil(os.system, f"touch {marker}"),
        {"observations": _Evil(_make_marker, str(marker))},
        _Evil(eval, f"open({str(marker)!r}, 'w')"),
    ]


def test_pickles_that_run_code_are_refused(tmp_path):
    marker = tmp_path / "MARKER"
    for i, payload in enumerate(_evil_payloads(marker)):
        data = pickle.dumps(payload)
        plain = tmp_path / f"evil{i}.pkl"
        plain.write_bytes(data)
        zipped = tmp_path / f"evil{i}.gz"
        zipped.write_bytes(gzip.compress(data))
        for path in (plain, zipped):
            err = _error(path)
            _assert_names(err, path)
            assert "refusing to unpickle" in str(err)
            assert "only numpy arrays and plain containers are allowed" in str(err)
            assert not marker.exists()


def test_npy_object_array_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    for i, payload in enumerate(_evil_payloads(marker)):
        buf = io.BytesIO()
        npy_format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
        path = tmp_path / f"evil{i}.npy"
        path.write_bytes(buf.getvalue() + pickle.dumps(np.array(payload, dtype=object)))
        err = _error(path)
        _assert_names(err, path)
        assert "refusing to unpickle" in str(err)
        assert not marker.exists()


def test_actions_outside_the_action_space_name_the_field():
    import gymnasium as gym

    from bearl.data.dataset import Dataset, DatasetInfo
    from bearl.errors import DatasetError

    n = 10
    acts = np.zeros((n, 1), np.float32)
    acts[4] = 3.5  # Pendulum's bounds are [-2, 2]
    ds = Dataset(
        np.zeros((n, 3)),
        acts,
        np.zeros(n),
        np.zeros((n, 3)),
        np.zeros(n, bool),
        info=DatasetInfo(source="outside.hdf5"),
    )
    env = gym.make("Pendulum-v1")
    with pytest.raises(
        DatasetError, match=r"outside.hdf5: field 'actions': 1 rows outside .*row 4"
    ):
        ds.check_spaces(env.observation_space, env.action_space, "Pendulum-v1")
    acts[4] = 2.0  # on the bound is fine
    Dataset(np.zeros((n, 3)), acts, np.zeros(n), np.zeros((n, 3)), np.zeros(n, bool)).check_spaces(
        env.observation_space, env.action_space
    )


# -- files that declare more than fits in memory (issue #46) ------------------------------------
# Each file holds a few KB but declares 2,000,000,000 transitions; every loader refuses it from
# the declared shapes, before reading, with one line. The memory available is fixed at 16 GiB
# (``small_memory``) so that the numbers are the same on every machine; the CLI tests use the
# machine's own, with files that declare more than any machine has.
HUGE = 2_000_000_000
GIB = 2**30


@pytest.fixture
def small_memory(monkeypatch):
    import bearl.data.dataset as dataset

    monkeypatch.setattr(dataset, "available_memory", lambda: 16 * GIB)


def _declaring_h5(path: Path, rows: int = HUGE, next_observations: bool = True) -> Path:
    """A D4RL file whose fields (11 observations, 3 actions) declare ``rows`` rows and hold
    none: chunked and compressed, never written."""
    fields = {"observations": (rows, 11), "actions": (rows, 3), "rewards": (rows,)}
    if next_observations:
        fields["next_observations"] = (rows, 11)
    with h5py.File(path, "w") as f:
        for key, shape in fields.items():
            f.create_dataset(key, shape=shape, dtype="f4", chunks=True, compression="gzip")
        for key in ("terminals", "timeouts"):
            f.create_dataset(key, shape=(rows,), dtype=bool, chunks=True, compression="gzip")
    assert path.stat().st_size < 20_000
    return path


def _assert_too_big(err: BaseException, path: Path, rows: int, gib: str, held_as="float32"):
    message = str(err)
    assert message.startswith(f"{path}: declares {rows:,} transitions ({gib} GiB as {held_as})")
    assert "but 16.0 GiB of memory is available; load it where more memory is free" in message
    assert "\n" not in message


@pytest.mark.parametrize("next_observations", [True, False])
def test_hdf5_that_declares_more_than_fits(tmp_path, small_memory, next_observations):
    path = _declaring_h5(tmp_path / "x.hdf5", next_observations=next_observations)
    # held as bearl holds it: 2e9 rows of 11 + 3 + 1 + 11 float32 and two bool flags
    _assert_too_big(_error(path), path, HUGE, "197.4")


@pytest.mark.parametrize("field", ["rewards", "timeouts"])
def test_hdf5_with_one_field_that_declares_more_than_fits(tmp_path, small_memory, field):
    """Each field is read whole before lengths are compared, so one long field counts."""
    arrays = _arrays()
    del arrays[field]
    path = _write_h5(tmp_path / "one.hdf5", arrays)
    with h5py.File(path, "a") as f:
        f.create_dataset(field, shape=(HUGE,), dtype="f4", chunks=True, compression="gzip")
    # 2e9 rows of 3 + 1 + 1 + 3 float32 and two flags
    _assert_too_big(_error(path), path, HUGE, "63.3")


def _huge_episode(main: Path, episode: int = 1) -> None:
    """Replace one episode of a Pendulum Minari file by one that declares HUGE steps."""
    fields = {
        "observations": ((HUGE + 1, 3), "f4"),
        "actions": ((HUGE, 1), "f4"),
        "rewards": ((HUGE,), "f8"),
        "terminations": ((HUGE,), bool),
        "truncations": ((HUGE,), bool),
    }
    with h5py.File(main, "a") as f:
        group = f[f"episode_{episode}"]
        for key, (shape, dtype) in fields.items():
            del group[key]
            group.create_dataset(key, shape=shape, dtype=dtype, chunks=True, compression="gzip")


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("by", ["folder", "id"])
def test_minari_hdf5_that_declares_more_than_fits(tmp_path, monkeypatch, small_memory, by):
    """A Minari dataset declares its size by writing its episodes, so the test declares it in
    the HDF5 file minari keeps them in: that file is named."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    main = _three_episode_minari(tmp_path)
    _huge_episode(main)
    assert main.stat().st_size < 100_000
    err = _error(main.parent.parent if by == "folder" else "minari:bad-v0")
    # episodes of 4 and 5 steps and one of 2e9: 3 + 1 + 1 + 3 float32 and two flags a step
    _assert_too_big(err, main, HUGE + 9, "63.3")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_minari_metadata_that_declares_more_than_fits(tmp_path, monkeypatch, small_memory):
    """The steps metadata.json counts are allocated at once: they are checked too."""
    import json

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    meta = _three_episode_minari(tmp_path).parent / "metadata.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "total_steps": HUGE}))
    _assert_too_big(_error("minari:bad-v0"), meta, HUGE, "63.3")


def _declaring_npz(path: Path) -> Path:
    """An .npz whose members are headers alone, declaring 2e9 rows."""
    import zipfile

    shapes = {
        "observations": (HUGE, 11),
        "next_observations": (HUGE, 11),
        "actions": (HUGE, 3),
        "rewards": (HUGE,),
        "terminals": (HUGE,),
    }
    with zipfile.ZipFile(path, "w") as z:
        for key, shape in shapes.items():
            buf = io.BytesIO()
            header = {"descr": "<f4", "fortran_order": False, "shape": shape}
            npy_format.write_array_header_1_0(buf, header)
            z.writestr(f"{key}.npy", buf.getvalue())
    assert path.stat().st_size < 5_000
    return path


def test_npz_that_declares_more_than_fits(tmp_path, small_memory):
    path = _declaring_npz(tmp_path / "x.npz")
    _assert_too_big(_error(path), path, HUGE, "197.4")


class _ArrayByShape:
    """Pickles as a request to numpy for an array of 2e9 x 11 float32 by shape alone."""

    def __init__(self, how: str):
        self.how = how

    def __reduce__(self):
        if self.how == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return (_reconstruct, (np.ndarray, (HUGE, 11), b"f"))
        return (np.ndarray, ((HUGE, 11), np.dtype("f4")))


def _npy_of(payload: bytes) -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    return buf.getvalue() + payload


@pytest.mark.parametrize("how", ["_reconstruct", "ndarray"])
@pytest.mark.parametrize("kind", ["pkl", "gz", "npy"])
def test_pickle_that_declares_more_than_fits(tmp_path, small_memory, kind, how):
    """A pickle cannot be sized before unpickling; an array it asks numpy for by shape is
    checked before numpy allocates it."""
    arrays = _arrays()
    arrays["observations"] = _ArrayByShape(how)
    data = pickle.dumps(arrays, protocol=2)
    data = {"pkl": data, "gz": gzip.compress(data), "npy": _npy_of(data)}[kind]
    path = tmp_path / f"buffer.{kind}"
    path.write_bytes(data)
    assert path.stat().st_size < 5_000
    _assert_too_big(_error(path), path, HUGE, "82.0")  # the one array: 2e9 x 11 float32


def test_arrays_that_fit_but_not_once_more_packed(tmp_path, monkeypatch):
    """After unpickling, packing the arrays as float32 takes as much again: checked first."""
    import bearl.data.dataset as dataset

    path = tmp_path / "buffer.pkl"
    path.write_bytes(pickle.dumps(_arrays()))
    monkeypatch.setattr(dataset, "available_memory", lambda: 100)  # bytes
    err = str(_error(path))
    # 8 rows of 3 + 1 + 1 + 3 float32 and two flags: 272 bytes
    assert err.startswith(f"{path}: declares 8 transitions (0.0 GiB as float32) but 0.0 GiB")


def test_small_datasets_load_and_unknown_memory_skips_the_check(tmp_path, monkeypatch):
    import bearl.data.dataset as dataset

    h5 = write_d4rl(Dataset(**_arrays()), tmp_path / "small.hdf5")
    npz = tmp_path / "small.npz"
    np.savez(npz, **_arrays())
    pkl = tmp_path / "small.pkl"
    pkl.write_bytes(pickle.dumps(_arrays()))
    for available in (None, 16 * GIB, dataset.available_memory()):
        monkeypatch.setattr(dataset, "available_memory", lambda available=available: available)
        for path in (h5, npz, pkl):
            assert len(load_dataset(path)) == N


def test_available_memory_reads_meminfo_then_sysconf(monkeypatch):
    import bearl.data.dataset as dataset

    meminfo = b"MemTotal:       32000000 kB\nMemFree:  100 kB\nMemAvailable:   2048 kB\n"
    monkeypatch.setattr(dataset, "open", lambda *a, **k: io.BytesIO(meminfo), raising=False)
    assert dataset.available_memory() == 2048 * 1024

    def no_file(*args, **kwargs):
        raise FileNotFoundError("/proc/meminfo")

    pages = {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(dataset, "open", no_file, raising=False)
    monkeypatch.setattr(dataset.os, "sysconf", lambda name: pages[name])
    assert dataset.available_memory() == 1000 * 4096

    def unknown(name):
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(dataset.os, "sysconf", unknown)
    assert dataset.available_memory() is None


def test_available_memory_of_this_machine():
    from bearl.data.dataset import available_memory

    available = available_memory()
    if Path("/proc/meminfo").is_file():
        assert isinstance(available, int) and available > 0


@pytest.mark.parametrize("command", ["data info", "train"])
def test_cli_says_a_file_declares_more_than_fits_in_one_line(tmp_path, capsys, command):
    """Through the command line with the machine's own memory: 2**40 rows of 26 float32 are
    more than 100 TiB, which no machine has."""
    from bearl.cli import main

    path = _declaring_h5(tmp_path / "x.hdf5", rows=2**40)
    if command == "data info":
        argv = ["data", "info", str(path)]
    else:
        argv = ["train", "--dataset", str(path), "--env", "Pendulum-v1", "--steps", "1"]
        argv += ["--log_dir", str(tmp_path), "--progress", "false"]
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"bearl: error: {path}: declares 1,099,511,627,776 transitions (")
    assert "GiB as float32) but " in lines[0] and "GiB of memory is available; " in lines[0]
    assert "Traceback" not in captured.err
    assert not list(tmp_path.glob("**/BEAR_*")), "a failed start left a run folder behind"
