"""DreamOmni DiT and rectified flow. See model/dit.py for the call signature."""

from model.dit import PRESETS, DiTConfig, DreamOmniDiT, flops_breakdown, forward_flops, num_params

__all__ = ["PRESETS", "DiTConfig", "DreamOmniDiT", "flops_breakdown", "forward_flops", "num_params"]
