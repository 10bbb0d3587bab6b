"""Tiny randomly initialised transformers models for the photo reference ops, saved with save_pretrained to a
local folder (no download): a DPT depth model and a two-stage Segformer."""

from __future__ import annotations

ID2LABEL = {0: "background", 1: "sky", 2: "tree;plant", 3: "Road_Surface", 4: "person"}


def build_depth_model(path) -> str:
    """A 4-layer DPT (hidden 32); its processor works at 32²."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37,
                                    image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3],
                                    neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=16,
                                    reassemble_factors=[4, 2, 1, 0.5])
    transformers.DPTForDepthEstimation(config).save_pretrained(path)
    transformers.DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(path)
    return str(path)


def build_seg_model(path) -> str:
    """A two-stage Segformer (~36 kB) with ID2LABEL's classes; its processor works at 64²."""
    import torch
    import transformers

    torch.manual_seed(1)
    config = transformers.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                                          patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
                                          mlp_ratios=[2, 2], decoder_hidden_size=16, id2label=ID2LABEL,
                                          label2id={v: k for k, v in ID2LABEL.items()})
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(path)
    transformers.SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(path)
    return str(path)
