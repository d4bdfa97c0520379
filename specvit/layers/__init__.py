"""Reusable layers of the SpecViT family (no model definitions live here)."""

from specvit.layers.heads import RegressionHead, sigma_network
from specvit.layers.patch_embed import (
    Conv1dPatchEmbed,
    SlidingWindowPatchEmbed,
    build_patch_embed,
)
from specvit.layers.pos_embed import LearnedPosEmbed, SinusoidalPosEmbed, sinusoidal_code
from specvit.layers.transformer import Attention, EncoderBlock, FeedForward

__all__ = [
    "Attention",
    "Conv1dPatchEmbed",
    "EncoderBlock",
    "FeedForward",
    "LearnedPosEmbed",
    "RegressionHead",
    "SinusoidalPosEmbed",
    "SlidingWindowPatchEmbed",
    "build_patch_embed",
    "sigma_network",
    "sinusoidal_code",
]
