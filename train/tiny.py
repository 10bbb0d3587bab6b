"""Tiny random encoders, saved as real checkpoints, for tests and benches (no downloads).

`build_tiny_vlm(path)` writes a Qwen2-VL checkpoint folder laid out like the hub's Qwen2-VL-*-Instruct
(config.json, model.safetensors, tokenizer.json + tokenizer_config.json with the chat template,
preprocessor_config.json), so `train.encoders` loads it through the same code path as the real one.
`build_tiny_vae(path)` writes a FLUX-style AutoencoderKL (16 latent channels, 8x down, FLUX scaling and
shift). Each is well under 1 MB, builds in a fraction of a second, and is the same bytes every time.
`python -m train.tiny DIR` writes both (DIR/vlm, DIR/vae).

`real_2b=True` gives Qwen2-VL-2B's sizes (1536 hidden, 28 layers, 32-deep vision tower) with random
weights, for throughput benches on a GPU; it is several GB, never for tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# The special tokens a Qwen2-VL tokenizer has (and the chat template and model refer to).
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")

# Qwen2-VL-*-Instruct's chat template (default system prompt, one <|image_pad|> per image).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2-VL's preprocessor_config.json as the hub ships it, but for max_pixels (the hub's 12845056 is
# 16,384 tokens an image; here 256 tokens, 448² px). AutoImageProcessor maps the type to the PIL backend.
PREPROCESSOR_CONFIG = {
    "min_pixels": 56 * 56,
    "max_pixels": 256 * 28 * 28,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2VLProcessor",
}

FLUX_SCALING_FACTOR = 0.3611
FLUX_SHIFT_FACTOR = 0.1159


def build_tiny_vlm(path: str | Path, hidden_size: int = 64, layers: int = 2, seed: int = 0,
                   real_2b: bool = False) -> Path:
    """A random Qwen2-VL checkpoint in `path` (created); returns the path."""
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=_byte_level_tokenizer(), eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config=_text_config(hidden_size, layers, ids, real_2b),
        vision_config=_vision_config(hidden_size, real_2b),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config)
    model.save_pretrained(path)

    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    # Name the tokenizer class the hub checkpoints name, so AutoTokenizer takes the same route for both.
    tok_config_path = path / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text())
    tok_config["tokenizer_class"] = "Qwen2Tokenizer"
    tok_config_path.write_text(json.dumps(tok_config, indent=2, sort_keys=True) + "\n")
    (path / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2) + "\n")
    return path


def build_tiny_vae(path: str | Path, seed: int = 0, widths: tuple[int, ...] = (8, 16, 16, 16)) -> Path:
    """A random FLUX-style AutoencoderKL in `path` (created): 16 latent channels, 4 blocks = 8x down."""
    from diffusers import AutoencoderKL

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=16,
            down_block_types=["DownEncoderBlock2D"] * len(widths), up_block_types=["UpDecoderBlock2D"] * len(widths),
            block_out_channels=list(widths), layers_per_block=1, norm_num_groups=4, sample_size=128,
            scaling_factor=FLUX_SCALING_FACTOR, shift_factor=FLUX_SHIFT_FACTOR,
            use_quant_conv=False, use_post_quant_conv=False,
        )
    vae.save_pretrained(path)
    return path


def _byte_level_tokenizer():
    """A GPT-2-style byte-level BPE with no merges (one token per byte) plus the Qwen special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tokenizer


def _text_config(hidden_size: int, layers: int, ids: dict[str, int], real_2b: bool) -> dict:
    common = dict(vocab_size=320, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                  pad_token_id=ids["<|endoftext|>"], max_position_embeddings=32768)
    if real_2b:  # Qwen2-VL-2B-Instruct's text sizes (its vocabulary is 151,936; ours stays byte-level)
        return dict(common, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                    num_attention_heads=12, num_key_value_heads=2,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
    heads = 4
    half_head = hidden_size // heads // 2
    # transformers 5 pitfall: mrope_section defaults to the real model's [16, 24, 24] (head_dim 128) when
    # the config does not give one; it must sum to head_dim / 2, or the rotary split fails at run time.
    section = [half_head - 2 * (half_head // 3), half_head // 3, half_head // 3]
    return dict(common, hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=2,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": section})


def _vision_config(hidden_size: int, real_2b: bool) -> dict:
    if real_2b:
        return dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4)
    # hidden_size is the merger's output: the language model's width.
    return dict(depth=2, embed_dim=32, hidden_size=hidden_size, num_heads=2, mlp_ratio=2)


def main(argv: list[str] | None = None) -> int:
    """`python -m train.tiny DIR`: DIR/vlm and DIR/vae, to try precompute, training and sampling offline."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m train.tiny", description=main.__doc__)
    parser.add_argument("dir", help="where to write vlm/ and vae/")
    args = parser.parse_args(argv)
    root = Path(args.dir)
    print(f"wrote {build_tiny_vlm(root / 'vlm')} (hidden 64) and {build_tiny_vae(root / 'vae')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
