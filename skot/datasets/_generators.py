"""Seeded generators of CLIP-like two-modality embeddings."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = ["make_clip_like"]


def _unit(X):
    return X / np.linalg.norm(X, axis=-1, keepdims=True)


def make_clip_like(
    n_samples=1000,
    *,
    n_classes=10,
    n_features=64,
    modality_gap=0.5,
    class_spread=0.6,
    text_noise=0.3,
    imbalance=1.0,
    noise_ratio=0.0,
    random_state=None,
):
    """Paired "image" / "text" embeddings with the geometry of CLIP features.

    Each class has a latent direction. An image is its class direction plus
    isotropic noise (``class_spread``); its paired caption is the same latent
    point plus caption noise (``text_noise``). Both modalities are shifted by a
    shared offset in opposite directions (the *modality gap* of CLIP: images and
    texts live in two cones) and L2-normalised. Class prompts are the class
    directions in text space.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of image-caption pairs.
    n_classes : int, default=10
    n_features : int, default=64
    modality_gap : float, default=0.5
        Norm of the offset separating the two modalities.
    class_spread : float, default=0.6
        Within-class spread of the images (larger = harder zero-shot).
    text_noise : float, default=0.3
        Caption noise around its image's latent point.
    imbalance : float in (0, 1], default=1.0
        Long tail: class ``c`` has frequency proportional to ``imbalance**c``
        (1.0 = balanced; 0.05**(1/(n_classes-1)) gives a 1:20 tail).
    noise_ratio : float in [0, 1), default=0.0
        Fraction of pairs whose caption is swapped with another pair's
        (noisy correspondence); ``noisy`` marks them. ``noise_ratio *
        n_samples`` is rounded, and a single wrong pair (impossible: the
        swapped captions form a cycle) becomes two.
    random_state : int, RandomState or None

    Returns
    -------
    data : Bunch
        ``X`` (n_samples, n_features) image embeddings, ``Y`` (n_samples,
        n_features) paired caption embeddings, ``y`` (n_samples,) labels,
        ``class_embeddings`` (n_classes, n_features) class prompts, ``noisy``
        (n_samples,) bool, ``class_prior`` (n_classes,) true frequencies.

    Examples
    --------
    >>> from skot.datasets import make_clip_like
    >>> d = make_clip_like(100, n_classes=4, n_features=8, random_state=0)
    >>> d.X.shape, d.Y.shape, d.class_embeddings.shape
    ((100, 8), (100, 8), (4, 8))
    """
    for name, v, lo in (("n_samples", n_samples, 1), ("n_classes", n_classes, 2),
                        ("n_features", n_features, 2)):
        if (isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))
                or v < lo):
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")

    def real(v):
        return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))

    if not (real(imbalance) and 0 < imbalance <= 1):
        raise ValueError(f"imbalance must be in (0, 1], got {imbalance!r}")
    if not (real(noise_ratio) and 0 <= noise_ratio < 1):
        raise ValueError(f"noise_ratio must be in [0, 1), got {noise_ratio!r}")
    for name, v in (("modality_gap", modality_gap), ("class_spread", class_spread),
                    ("text_noise", text_noise)):
        # unit rows are taken of sums of these scales: past 1e150 their squares
        # overflow and the rows come out zero
        if not (real(v) and 0 <= v <= 1e150):
            raise ValueError(f"{name} must be a number in [0, 1e150], got {v!r}")
    rng = check_random_state(random_state)
    d = n_features
    centers = _unit(rng.normal(size=(n_classes, d)))
    prior = imbalance ** np.arange(n_classes)
    prior = prior / prior.sum()
    y = rng.choice(n_classes, size=n_samples, p=prior)
    latent = centers[y] + class_spread * rng.normal(size=(n_samples, d)) / np.sqrt(d) * 3
    gap = _unit(rng.normal(size=d)) * modality_gap
    X = _unit(latent + gap)
    Y = _unit(latent + text_noise * rng.normal(size=(n_samples, d)) / np.sqrt(d) * 3
              - gap)
    T = _unit(centers - gap)
    noisy = np.zeros(n_samples, dtype=bool)
    # a wrong pair takes another row's caption (the shuffled rows form a
    # cycle), so one alone is impossible: it becomes two (it was dropped)
    n_noisy = int(round(noise_ratio * n_samples))
    if n_noisy == 1 and n_samples > 1:
        n_noisy = 2
    if n_noisy > 1:
        idx = rng.choice(n_samples, n_noisy, replace=False)
        Y[idx] = Y[np.roll(idx, 1)]
        noisy[idx] = True
    return Bunch(X=X, Y=Y, y=y, class_embeddings=T, noisy=noisy,
                 class_prior=np.bincount(y, minlength=n_classes) / n_samples)
