import numpy as np
import pytest

from skot.datasets import load_embedding_shards, load_embeddings, make_clip_like


def test_make_clip_like_shapes_seed_and_structure():
    d = make_clip_like(500, n_classes=5, n_features=16, random_state=0)
    assert d.X.shape == (500, 16) and d.Y.shape == (500, 16)
    np.testing.assert_allclose(np.linalg.norm(d.X, axis=1), 1)
    again = make_clip_like(500, n_classes=5, n_features=16, random_state=0)
    np.testing.assert_array_equal(d.X, again.X)
    # zero-shot works better than chance, and the modality gap is there
    acc = np.mean((d.X @ d.class_embeddings.T).argmax(1) == d.y)
    assert acc > 0.5
    assert (d.X @ d.Y.T).mean() < (d.X @ d.X.T).mean()
    # paired captions are closer than random ones
    assert np.mean(np.sum(d.X * d.Y, 1)) > np.mean(d.X @ d.Y.T)


def test_long_tail_and_noisy_pairs():
    d = make_clip_like(2000, n_classes=6, imbalance=0.5, noise_ratio=0.3, random_state=1)
    counts = np.bincount(d.y, minlength=6)
    assert counts[0] > 10 * counts[-1]
    assert d.noisy.mean() == pytest.approx(0.3, abs=0.01)
    np.testing.assert_allclose(d.class_prior.sum(), 1)


def test_generator_bad_input():
    with pytest.raises(ValueError, match="imbalance"):
        make_clip_like(10, imbalance=0)
    with pytest.raises(ValueError, match="n_classes"):
        make_clip_like(10, n_classes=1)
    # each of these failed inside numpy without naming the parameter, or (the
    # huge scales) returned all-zero rows
    for kw, name in ((dict(n_samples=True), "n_samples"), (dict(imbalance="a"), "imbalance"),
                     (dict(modality_gap="x"), "modality_gap"),
                     (dict(modality_gap=None), "modality_gap"),
                     (dict(class_spread=1e200), "class_spread"),
                     (dict(noise_ratio=True), "noise_ratio")):
        kw.setdefault("n_samples", 10)
        with pytest.raises(ValueError, match=name):
            make_clip_like(**kw)


def test_load_npy_and_npz(tmp_path):
    X = np.random.default_rng(0).normal(size=(7, 3))
    np.save(tmp_path / "a.npy", X)
    np.testing.assert_array_equal(load_embeddings(tmp_path / "a.npy").X, X)
    np.savez(tmp_path / "b.npz", X=X, y=np.arange(7))
    b = load_embeddings(tmp_path / "b.npz", labels_key="y")
    np.testing.assert_array_equal(b.y, np.arange(7))
    np.savez(tmp_path / "c.npz", X=X, y=np.arange(6))
    with pytest.raises(ValueError, match="rows"):
        load_embeddings(tmp_path / "c.npz", labels_key="y")
    with pytest.raises(ValueError, match="npy or .npz"):
        (tmp_path / "a.txt").write_text("x")
        load_embeddings(tmp_path / "a.txt")
    np.save(tmp_path / "v.npy", np.arange(3.0))
    with pytest.raises(ValueError, match="2-D"):
        load_embeddings(tmp_path / "v.npy")


def _write_layout(folder, sizes, d=5, seed=0):
    """A clip-retrieval folder: shard i has sizes[i] rows, image rows filled
    with i, captions c<i><j>."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(seed)
    for sub in ("img_emb", "text_emb", "metadata"):
        (folder / sub).mkdir()
    for i, s in enumerate(sizes):
        np.save(folder / "img_emb" / f"img_emb_{i}.npy", np.full((s, d), float(i)))
        np.save(folder / "text_emb" / f"text_emb_{i}.npy", rng.normal(size=(s, d)))
        pd.DataFrame({"caption": [f"c{i}{j}" for j in range(s)]}).to_parquet(
            folder / "metadata" / f"metadata_{i}.parquet")
    return pd, rng


def test_load_clip_retrieval_layout(tmp_path):
    _, rng = _write_layout(tmp_path, [4, 3])
    d = load_embedding_shards(tmp_path)
    assert d.img.shape == (7, 5) and d.text.shape == (7, 5) and len(d.metadata) == 7
    assert d.metadata.caption.iloc[4] == "c10"
    np.save(tmp_path / "text_emb" / "text_emb_1.npy", rng.normal(size=(2, 5)))
    with pytest.raises(ValueError, match="row counts"):
        load_embedding_shards(tmp_path)
    np.save(tmp_path / "text_emb" / "text_emb_1.npy", rng.normal(size=(3, 6)))
    with pytest.raises(ValueError, match="dimensions"):
        load_embedding_shards(tmp_path)


def test_shard_layout_ignores_files_that_are_not_shards(tmp_path):
    # a stray img_emb_backup.npy was placed first (index -1) and a stray
    # metadata_old.parquet crashed with an AttributeError
    pd, _ = _write_layout(tmp_path, [2, 3], d=4)
    np.save(tmp_path / "img_emb" / "img_emb_backup.npy", np.full((9, 4), 7.0))
    pd.DataFrame({"caption": ["x"] * 9}).to_parquet(
        tmp_path / "metadata" / "metadata_old.parquet")
    d = load_embedding_shards(tmp_path)
    np.testing.assert_array_equal(d.img[:, 0], [0, 0, 1, 1, 1])
    assert len(d.metadata) == 5


def test_make_clip_like_single_noisy_pair_becomes_two_and_checks_scales():
    d = make_clip_like(10, n_classes=2, noise_ratio=0.1, random_state=0)
    assert d.noisy.sum() == 2
    for name in ("modality_gap", "class_spread", "text_noise"):
        with pytest.raises(ValueError, match=name):
            make_clip_like(10, **{name: -0.5})


def test_npz_cannot_be_memory_mapped(tmp_path):
    np.savez(tmp_path / "e.npz", X=np.ones((3, 2)))
    with pytest.raises(ValueError, match="mmap_mode"):
        load_embeddings(tmp_path / "e.npz", mmap_mode="r")


def test_mmap_mode_is_read_only(tmp_path):
    # numpy's "w+" truncated the user's file to 0 bytes; "r+" wrote edits back
    path = tmp_path / "w.npy"
    np.save(path, np.arange(12.0).reshape(4, 3))
    for mode in ("w+", "r+", "c", "write"):
        with pytest.raises(ValueError, match="mmap_mode must be None or 'r'"):
            load_embeddings(path, mmap_mode=mode)
    np.testing.assert_array_equal(load_embeddings(path).X, np.arange(12.0).reshape(4, 3))
    with pytest.raises(ValueError, match="key='X' needs a .npz"):
        load_embeddings(path, key="X")


def test_shards_pair_up_by_number(tmp_path):
    # text shard 5 was paired with image shard 1 when the row counts matched
    pd, rng = _write_layout(tmp_path, [2, 2])
    (tmp_path / "text_emb" / "text_emb_1.npy").rename(tmp_path / "text_emb" / "text_emb_5.npy")
    with pytest.raises(ValueError, match="different shard numbers"):
        load_embedding_shards(tmp_path)
    (tmp_path / "text_emb" / "text_emb_5.npy").rename(tmp_path / "text_emb" / "text_emb_1.npy")
    (tmp_path / "metadata" / "metadata_1.parquet").rename(
        tmp_path / "metadata" / "metadata_3.parquet")
    with pytest.raises(ValueError, match="metadata shard numbers"):
        load_embedding_shards(tmp_path)
    (tmp_path / "metadata" / "metadata_3.parquet").rename(
        tmp_path / "metadata" / "metadata_1.parquet")
    # metadata rows that do not match a shard's embeddings: the message names
    # the counts and the folder
    pd.DataFrame({"caption": ["only one"]}).to_parquet(
        tmp_path / "metadata" / "metadata_1.parquet")
    with pytest.raises(ValueError, match=r"\[2, 1\] do not match the embeddings' "
                       r"\[2, 2\] in .*" + tmp_path.name):
        load_embedding_shards(tmp_path)
    # one modality given as a plain string
    d = load_embedding_shards(tmp_path, modalities="img", metadata=False)
    assert d.img.shape == (4, 5) and "text" not in d


def test_unreadable_files_raise_naming_the_path(tmp_path):
    # numpy's messages named no file: a corrupt .npy or .npz was reported as
    # "pickled (object) data", an empty one as a bare EOFError, a string array
    # was returned as embeddings, 0-d/2-D labels failed in len() or passed
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "str.npy", np.array([["a", "b"]]))
    for name in ("bad.npy", "bad.npz", "empty.npy", "obj.npy", "str.npy"):
        with pytest.raises(ValueError, match=name):
            load_embeddings(tmp_path / name)
    np.savez(tmp_path / "objz.npz", X=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="'X' of .*objz.npz"):
        load_embeddings(tmp_path / "objz.npz")
    for y in (np.array(3), np.ones((2, 2))):
        np.savez(tmp_path / "lab.npz", X=np.ones((2, 2)), y=y)
        with pytest.raises(ValueError, match="labels 'y' in .*lab.npz must be 1-D"):
            load_embeddings(tmp_path / "lab.npz", labels_key="y")
    # a corrupt shard of the clip-retrieval layout, and no modality at all
    (tmp_path / "f").mkdir()
    _write_layout(tmp_path / "f", [2, 2])
    (tmp_path / "f" / "img_emb" / "img_emb_1.npy").write_bytes(b"junk")
    with pytest.raises(ValueError, match="img_emb_1.npy"):
        load_embedding_shards(tmp_path / "f")
    for mods in ((), None, ("img", 3)):
        with pytest.raises(ValueError, match="modalities"):
            load_embedding_shards(tmp_path / "f", modalities=mods)


def test_default_key_leaves_the_labels_out(tmp_path):
    # features and labels in one .npz: the default key had found two arrays
    # and asked for key=
    p = tmp_path / "feats.npz"
    np.savez(p, feats=np.ones((4, 3)), labels=np.arange(4))
    out = load_embeddings(p, labels_key="labels")
    assert out.X.shape == (4, 3) and list(out.y) == [0, 1, 2, 3]
