"""Synthetic CLIP-like data and loaders for embedding files (no downloads)."""

from ._generators import make_clip_like
from ._loaders import load_embedding_shards, load_embeddings

__all__ = ["make_clip_like", "load_embeddings", "load_embedding_shards"]
