"""Loaders for the embedding formats people actually have (no downloads)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

__all__ = ["load_embeddings", "load_embedding_shards"]


def _load(path, mmap_mode=None):
    """``np.load`` without pickles; a file numpy cannot read (truncated, not a
    numpy file, an object array) raises a ``ValueError`` naming the path
    (numpy's own messages do not, and a corrupt file was reported as
    "pickled data")."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise ValueError(f"cannot read {path} as a numpy .npy/.npz file without "
                         f"pickles ({type(exc).__name__}: {exc})") from exc


def _check_2d(arr, name, path):
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} in {path} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} in {path} must be 2-D (n_rows, dim), got shape "
                         f"{arr.shape}")
    return arr


def load_embeddings(path, *, key=None, labels_key=None, mmap_mode=None):
    """Load embeddings from a ``.npy`` or ``.npz`` file.

    Parameters
    ----------
    path : str or Path
        A ``.npy`` file (one (n, d) array) or a ``.npz`` archive.
    key : str, default=None
        Array name inside a ``.npz``; None takes the only array besides
        ``labels_key``'s, or ``"X"`` / ``"embeddings"`` / ``"emb"`` (in this
        order) when there are several.
    labels_key : str, default=None
        Optional labels array inside a ``.npz`` (same number of rows).
    mmap_mode : {None, "r"}, default=None
        Memory-map a ``.npy`` instead of reading it (a ``.npz`` cannot be:
        a ``ValueError``).

    Returns
    -------
    data : Bunch
        ``X`` (n, d) and, when ``labels_key`` is given, ``y`` (n,).
    """
    if mmap_mode not in (None, "r"):
        # numpy's "w+" truncates the file, "r+" writes edits back to it
        raise ValueError(f"mmap_mode must be None or 'r' (read-only), got {mmap_mode!r}; "
                         "the loaders never write to the user's files")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such embeddings file: {path}")
    if path.suffix == ".npy":
        for name, value in (("key", key), ("labels_key", labels_key)):
            if value is not None:
                raise ValueError(f"{name}={value!r} needs a .npz archive; a .npy "
                                 "holds one array")
        X = _load(path, mmap_mode=mmap_mode)
        return Bunch(X=_check_2d(X, "the array", path))
    if path.suffix != ".npz":
        raise ValueError(f"path must end in .npy or .npz, got {path.name!r}")
    if mmap_mode is not None:
        # numpy reads the members of a .npz into memory whatever mmap_mode says
        raise ValueError(
            f"mmap_mode={mmap_mode!r} needs a .npy file; a .npz archive cannot be "
            "memory-mapped (save the array with np.save)"
        )
    with _load(path) as z:
        names = list(z.files)
        if key is None:
            cands = [n for n in ("X", "embeddings", "emb") if n in names]
            # the labels' array is not a candidate for the features
            rest = [n for n in names if n != labels_key]
            if len(rest) == 1:
                key = rest[0]
            elif cands:
                key = cands[0]
            else:
                raise ValueError(f"{path.name} holds several arrays {names}; pass key=")
        if key not in names:
            raise ValueError(f"key={key!r} is not in {path.name} (arrays: {names})")
        out = Bunch(X=_check_2d(_member(z, key, path), f"array {key!r}", path))
        if labels_key is not None:
            if labels_key not in names:
                raise ValueError(f"labels_key={labels_key!r} is not in {path.name}")
            y = _member(z, labels_key, path)
            if y.ndim != 1:
                raise ValueError(f"labels {labels_key!r} in {path} must be 1-D "
                                 f"(n_rows,), got shape {y.shape}")
            if len(y) != len(out.X):
                raise ValueError(f"labels {labels_key!r} have {len(y)} rows but "
                                 f"{key!r} has {len(out.X)}")
            out.y = y
    return out


def _member(z, key, path):
    """One array of an open ``.npz``; a damaged member or an object array
    raises a ``ValueError`` naming the archive."""
    try:
        return z[key]
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read array {key!r} of {path} without pickles "
                         f"({type(exc).__name__}: {exc})") from exc


def _shards(folder, stem, ext="npy"):
    """``stem_<k>.ext`` files in numeric order of k, as pairs ``(k, path)``;
    other names that the glob matches (``stem_backup.ext``, ``stem_old.ext``)
    are not shards and are left out, never placed first."""
    pattern = re.compile(rf"^{re.escape(stem)}_(\d+)\.{ext}$")
    found = []
    for p in Path(folder).glob(f"{stem}_*.{ext}"):
        m = pattern.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def load_embedding_shards(folder, *, modalities=("img", "text"), metadata=True):
    """Load a folder in the clip-retrieval layout.

    The layout written by ``clip-retrieval inference``::

        folder/img_emb/img_emb_0.npy, img_emb_1.npy, ...
        folder/text_emb/text_emb_0.npy, ...
        folder/metadata/metadata_0.parquet, ...

    Shards are concatenated in numeric order; every modality and the metadata
    must have the same number of rows in every shard.

    Parameters
    ----------
    folder : str or Path
    modalities : tuple of str, default=("img", "text")
        Which ``<name>_emb`` sub-folders to read (missing ones raise).
    metadata : bool, default=True
        Read ``metadata/*.parquet`` (needs pandas and pyarrow) when present.

    Returns
    -------
    data : Bunch
        ``img`` (n, d_img), ``text`` (n, d_text) (the requested modalities)
        and ``metadata`` (a pandas DataFrame, or None).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    if isinstance(modalities, str):
        modalities = (modalities,)  # "img" is one modality, not three letters
    try:
        modalities = tuple(modalities)
    except TypeError:
        modalities = (modalities,)  # refused just below
    if not modalities or not all(isinstance(m, str) and m for m in modalities):
        raise ValueError("modalities must name at least one <name>_emb sub-folder "
                         f"(e.g. ('img', 'text')), got {modalities!r}")
    out = Bunch(metadata=None)
    counts, numbers = {}, {}
    for mod in modalities:
        sub = folder / f"{mod}_emb"
        shards = _shards(sub, f"{mod}_emb")
        if not shards:
            raise ValueError(f"no shards {mod}_emb_*.npy in {sub}")
        numbers[mod] = [k for k, _ in shards]
        files = [f for _, f in shards]
        arrays = [_check_2d(_load(f), "shard", f) for f in files]
        dims = {a.shape[1] for a in arrays}
        if len(dims) != 1:
            raise ValueError(f"{mod} shards have different dimensions {sorted(dims)} "
                             f"in {sub}")
        counts[mod] = [len(a) for a in arrays]
        out[mod] = np.concatenate(arrays)
    # rows pair up only if shard k of every modality is shard k of the others
    ids = list(numbers.values())
    if any(k != ids[0] for k in ids):
        raise ValueError(f"the modalities have different shard numbers in {folder}: "
                         f"{numbers}; shard k of each must hold the same rows")
    per_shard = list(counts.values())
    if any(c != per_shard[0] for c in per_shard):
        raise ValueError(
            f"row counts differ between modalities per shard in {folder}: {counts}"
        )
    meta_dir = folder / "metadata"
    if metadata and meta_dir.is_dir():
        import pandas as pd

        shards = _shards(meta_dir, "metadata", "parquet")
        if ids and [k for k, _ in shards] != ids[0]:
            raise ValueError(
                f"metadata shard numbers {[k for k, _ in shards]} do not match the "
                f"embeddings' {ids[0]} in {folder}")
        frames = [pd.read_parquet(f) for _, f in shards]
        if per_shard and [len(f) for f in frames] != per_shard[0]:
            raise ValueError(
                f"metadata rows per shard {[len(f) for f in frames]} do not match the "
                f"embeddings' {per_shard[0]} in {folder}"
            )
        out.metadata = pd.concat(frames, ignore_index=True)
    return out
