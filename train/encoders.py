"""The frozen encoders: Qwen2-VL for the condition, the FLUX VAE for the target. Local folders only.

    vlm:    VLMRequest (images + text)  -> chat template -> Qwen2-VL -> hidden_states[-2]  (L, D)
    latent: uint8 image (H, W, 3)       -> AutoencoderKL posterior mean, (z - shift) * scale  (16, H/8, W/8)

`Encoders.load(vlm_dir, vae_dir)` checks both folders first (a missing file is one line naming it, as a
UserError) and then loads them in eval mode, frozen. Both encoders batch: `encode_vlm` pads each batch
to its longest prompt and returns every sample's true-length slice; `encode_latents` stacks images of
one size. Outputs stay on the encoders' device in their dtype; the caller casts for storage.

Why not Qwen2VLProcessor: it needs torchvision (for its video processor), which does not load against
the CPU torch here. The processor's text side is three steps, done here with the checkpoint's own parts:
the chat template, each `<|image_pad|>` expanded to the image's token count (grid_t·grid_h·grid_w / 4),
and `mm_token_type_ids` (1 on image tokens) for the model's 3-D rotary positions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from collage.errors import UserError

from .conditioning import VLMRequest, unconditional_request

HIDDEN_LAYER = -2  # hidden_states[-2]: the penultimate layer's output (before the final norm)
LATENT_CHANNELS = 16  # the FLUX VAE's; the DiT is built for it
IMAGE_PAD = "<|image_pad|>"

TOKENIZER_FILES = ("tokenizer.json",), ("vocab.json", "merges.txt")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


# --------------------------------------------------------------------------- folder checks

def _read_config(path: Path, who: str) -> dict:
    if not path.is_dir():
        raise UserError(f"{who} {path}: no such directory (give the local folder of the checkpoint)")
    config = path / "config.json"
    if not config.is_file():
        hint = " (for a FLUX checkout, give its vae/ folder)" if (path / "vae" / "config.json").is_file() else ""
        raise UserError(f"{who} {path}: config.json is missing{hint}: give a folder that save_pretrained wrote")
    try:
        return json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{who} {path}: config.json is not readable json ({exc})") from None


def _require_weights(path: Path, who: str, stem: str) -> None:
    """`stem`.safetensors, or `stem`.safetensors.index.json with every shard it names."""
    index = path / f"{stem}.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{who} {path}: {index.name} is not a readable weight index ({exc})") from None
        for shard in shards:
            if not (path / shard).is_file():
                raise UserError(f"{who} {path}: weights shard {shard} is missing: copy it from the checkpoint")
        return
    if not (path / f"{stem}.safetensors").is_file():
        raise UserError(f"{who} {path}: weights are missing ({stem}.safetensors or {index.name} and its shards): "
                        "copy them from the checkpoint (safetensors only)")


def check_vlm_dir(path: str | Path) -> dict:
    """Every file a Qwen2-VL folder needs, before anything heavy loads; returns its config."""
    path, who = Path(path), "VLM"
    config = _read_config(path, who)
    if config.get("model_type") != "qwen2_vl":
        kind = config.get("model_type") or config.get("_class_name")
        raise UserError(f"{who} {path}: config.json describes {kind!r}, not Qwen2-VL (model_type 'qwen2_vl'): "
                        "give a Qwen2-VL checkpoint folder")
    if not any(all((path / name).is_file() for name in group) for group in TOKENIZER_FILES):
        raise UserError(f"{who} {path}: tokenizer files are missing (tokenizer.json, or vocab.json + merges.txt): "
                        "copy them from the checkpoint")
    if not (path / "preprocessor_config.json").is_file():
        raise UserError(f"{who} {path}: preprocessor_config.json is missing (the image processor's settings): "
                        "copy it from the checkpoint")
    _require_weights(path, who, "model")
    if _chat_template(path) is None:
        raise UserError(f"{who} {path}: no chat template (tokenizer_config.json's chat_template, "
                        "chat_template.jinja or chat_template.json): copy it from the checkpoint")
    return config


def check_vae_dir(path: str | Path) -> dict:
    path, who = Path(path), "VAE"
    config = _read_config(path, who)
    if config.get("_class_name") != "AutoencoderKL":
        kind = config.get("_class_name") or config.get("model_type")
        raise UserError(f"{who} {path}: config.json describes {kind!r}, not an AutoencoderKL: "
                        "give the FLUX VAE's folder")
    if config.get("latent_channels") != LATENT_CHANNELS:
        raise UserError(f"{who} {path}: the VAE has {config.get('latent_channels')} latent channels, the DiT needs "
                        f"{LATENT_CHANNELS} (the FLUX VAE): give the FLUX VAE's folder")
    _require_weights(path, who, "diffusion_pytorch_model")
    return config


def _chat_template(path: Path) -> str | None:
    """The checkpoint's chat template: tokenizer_config.json's, else chat_template.jinja / .json (the
    processor's, which is where hub Qwen2-VL checkpoints also keep it)."""
    tok_config = path / "tokenizer_config.json"
    if tok_config.is_file():
        try:
            template = json.loads(tok_config.read_text(encoding="utf-8")).get("chat_template")
        except ValueError:
            template = None
        if isinstance(template, str) and template:
            return template
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text(encoding="utf-8") or None
    if (path / "chat_template.json").is_file():
        try:
            return json.loads((path / "chat_template.json").read_text(encoding="utf-8")).get("chat_template") or None
        except ValueError:
            return None
    return None


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_error(who: str, path: Path, exc: Exception) -> UserError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UserError(f"{who} {path}: cannot load it ({type(exc).__name__}: {first})")


# --------------------------------------------------------------------------- the VLM

@dataclass
class VLMInput:
    """One request, tokenised and its images patched (CPU work, picklable): what a batch is built from."""

    input_ids: torch.Tensor  # (T,) int64, image pads expanded
    pixel_values: torch.Tensor | None  # (patches, 3·t·14·14) float32, its images' patches in order
    grid_thw: torch.Tensor | None  # (n_images, 3) int64


class VLMEncoder:
    """Qwen2-VL, frozen: a VLMRequest -> its hidden_states[-2], (L, D)."""

    def __init__(self, model, tokenizer, image_processor, chat_template: str, path: Path, config_digest: str):
        self.model = model  # Qwen2VLForConditionalGeneration, eval, frozen
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.chat_template = chat_template
        self.path = path
        self.config_digest = config_digest  # sha256 of config.json
        self.image_token_id = int(model.config.image_token_id)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._unconditional: torch.Tensor | None = None

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
             max_pixels: int | None = None) -> VLMEncoder:
        """`max_pixels` caps each image's resized area (tokens ≈ max_pixels / 28²); None keeps the
        checkpoint's preprocessor_config.json (the hub's Qwen2-VL allows 16,384 tokens an image)."""
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLForConditionalGeneration

        path = Path(path)
        check_vlm_dir(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            # transformers 5: AutoImageProcessor gives the PIL backend (Qwen2VLImageProcessorPil) when
            # torchvision is absent; max_pixels becomes size["longest_edge"].
            extra = {} if max_pixels is None else {"max_pixels": int(max_pixels)}
            image_processor = AutoImageProcessor.from_pretrained(path, **extra)
            # transformers 5: `dtype=` (torch_dtype is deprecated); output_loading_info to refuse a folder
            # whose weights do not fit its config (it would otherwise load with random missing layers).
            model, info = Qwen2VLForConditionalGeneration.from_pretrained(path, dtype=dtype,
                                                                          output_loading_info=True)
        except Exception as exc:  # a corrupt file in a folder that passed the checks: still one line
            raise _load_error("VLM", path, exc) from None
        if info.get("missing_keys"):
            missing = sorted(info["missing_keys"])
            raise UserError(f"VLM {path}: {len(missing)} tensor(s) the config needs are not in the "
                            f"weights (e.g. {missing[0]}): the weights and config.json are from different models")
        model.to(device).eval().requires_grad_(False)
        return cls(model, tokenizer, image_processor, _chat_template(path), path, file_digest(path / "config.json"))

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def max_pixels(self) -> int:
        return int(self.image_processor.size["longest_edge"])

    def describe(self) -> dict:
        """What FEATS/run.json records about this encoder."""
        return {"path": str(self.path), "config_digest": self.config_digest, "hidden_size": self.hidden_size,
                "hidden_layer": HIDDEN_LAYER, "max_pixels": self.max_pixels, "dtype": str(self.dtype).split(".")[-1]}

    # ---- requests -> token ids and pixels

    def chat_text(self, request: VLMRequest) -> str:
        """The chat-templated text: one user turn, the images first, then the text; one <|image_pad|> each."""
        content = [{"type": "image"} for _ in request.images] + [{"type": "text", "text": request.text}]
        return self.tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                                  chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=False)

    def prepare(self, request: VLMRequest) -> VLMInput:
        """The CPU half of encoding (chat template, tokenizer, image processor): ~5 ms a 256² image, ~14 ms
        a 512² one on one core. Precompute can run it in worker threads or processes ahead of the device."""
        text = self.chat_text(request)
        pixel_values = grid_thw = None
        if request.images:
            rgb = [_to_rgb(image) for image in request.images]
            processed = self.image_processor(images=rgb, input_data_format="channels_last", return_tensors="pt")
            pixel_values, grid_thw = processed["pixel_values"], processed["image_grid_thw"]
            text = _expand_image_pads(text, [int(n) for n in grid_thw.prod(-1) // self.merge_area])
        input_ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        n_image_tokens = int((input_ids == self.image_token_id).sum())
        expected = 0 if grid_thw is None else int(grid_thw.prod(-1).sum()) // self.merge_area
        if n_image_tokens != expected:
            raise ValueError(f"the chat template gave {n_image_tokens} image tokens for {expected} image features")
        return VLMInput(input_ids, pixel_values, grid_thw)

    @property
    def merge_area(self) -> int:
        return int(self.model.config.vision_config.spatial_merge_size) ** 2

    def image_tokens(self, height: int, width: int) -> int:
        """How many tokens an image of this size becomes (after the processor's resize)."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        factor = self.image_processor.patch_size * self.image_processor.merge_size
        h, w = smart_resize(height, width, factor=factor, min_pixels=self.image_processor.size["shortest_edge"],
                            max_pixels=self.max_pixels)
        return (h // factor) * (w // factor)

    # ---- the forward

    def encode(self, requests: list[VLMRequest], batch_size: int | None = None) -> list[torch.Tensor]:
        """Each request's hidden_states[-2], (L_i, D), in request order."""
        return self.encode_inputs([self.prepare(r) for r in requests], batch_size)

    def encode_inputs(self, prompts: list[VLMInput], batch_size: int | None = None) -> list[torch.Tensor]:
        """The device half. Inputs are sorted by length and cut into batches of `batch_size` (None: one
        batch), so padding stays small; the same list gives the same batches, hence the same bits."""
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].input_ids))
        size = batch_size or max(len(prompts), 1)
        out: list[torch.Tensor | None] = [None] * len(prompts)
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            hidden, lengths = self._forward([prompts[i] for i in chunk])
            for row, (i, length) in enumerate(zip(chunk, lengths)):
                # A clone outside inference mode: a normal tensor (an inference tensor would refuse to be
                # saved for backward in the DiT's forward), not a view pinning the whole padded batch.
                out[i] = hidden[row, :length].clone()
        return out

    def unconditional(self) -> torch.Tensor:
        """The empty prompt's features (no images): the condition CFG dropout substitutes. Cached."""
        if self._unconditional is None:
            self._unconditional = self.encode([unconditional_request()])[0]
        return self._unconditional.clone()  # a copy: the cache survives a caller's in-place edit

    @torch.inference_mode()
    def _forward(self, prompts: list[VLMInput]) -> tuple[torch.Tensor, list[int]]:
        """A right-padded batch -> hidden_states[-2] (B, T, D) and each row's true length."""
        device = self.device
        lengths = [len(p.input_ids) for p in prompts]
        input_ids = torch.full((len(prompts), max(lengths)), self.pad_token_id, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros_like(input_ids)  # (B, T), 1 on real tokens
        for row, p in enumerate(prompts):
            input_ids[row, :len(p.input_ids)] = p.input_ids
            attention_mask[row, :len(p.input_ids)] = 1
        # Right padding: a real token never attends to a pad (causal), and text positions (arange) are the
        # same as unpadded; left padding would shift them unless position ids were rebuilt from the mask.
        inputs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device),
                  # transformers 5 refuses image inputs without mm_token_type_ids (0 text, 1 image): the
                  # 3-D rotary positions of image tokens come from it.
                  "mm_token_type_ids": (input_ids == self.image_token_id).to(torch.int32).to(device)}
        with_images = [p for p in prompts if p.pixel_values is not None]
        if with_images:
            # Images are consumed in order of their pad tokens, row by row: concatenate in that order.
            inputs["pixel_values"] = torch.cat([p.pixel_values for p in with_images]).to(device, self.dtype)
            inputs["image_grid_thw"] = torch.cat([p.grid_thw for p in with_images]).to(device)
        # The base model (model.model), not the LM head: logits over a 151k vocabulary per token would cost
        # more memory than the features. use_cache=False: nothing is generated.
        output = self.model.model(**inputs, output_hidden_states=True, use_cache=False)
        return output.hidden_states[HIDDEN_LAYER], lengths


def _expand_image_pads(text: str, counts: list[int]) -> str:
    """The i-th <|image_pad|> becomes counts[i] of them (what Qwen2VLProcessor does)."""
    pieces = text.split(IMAGE_PAD)
    if len(pieces) - 1 != len(counts):
        raise ValueError(f"the chat template wrote {len(pieces) - 1} {IMAGE_PAD} for {len(counts)} images")
    return pieces[0] + "".join(IMAGE_PAD * n + piece for n, piece in zip(counts, pieces[1:]))


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) L or (H, W, 3) RGB -> (H, W, 3) RGB (masks and canny/depth maps are L)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"images must be (H, W) or (H, W, 3), got {image.shape}")


# --------------------------------------------------------------------------- the VAE

def _size_batches(sizes: list[tuple[int, ...]], batch_size: int | None) -> Iterator[list[int]]:
    """Indices grouped by size (first-seen order), in chunks of batch_size (None: a whole group at once)."""
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, size in enumerate(sizes):
        by_size.setdefault(size, []).append(i)
    for indices in by_size.values():
        step = batch_size or len(indices)
        for start in range(0, len(indices), step):
            yield indices[start:start + step]


class LatentEncoder:
    """The FLUX VAE's encoder, frozen: uint8 (H, W, 3) -> (z - shift) * scale, (16, H/8, W/8)."""

    def __init__(self, vae, path: Path, config_digest: str):
        self.vae = vae  # diffusers AutoencoderKL, eval, frozen
        self.path = path
        self.config_digest = config_digest
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(vae.config.shift_factor or 0.0)  # SD-style VAEs have none
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32) -> LatentEncoder:
        from diffusers import AutoencoderKL

        path = Path(path)
        config = check_vae_dir(path)
        # fp16 overflows in the FLUX VAE (config force_upcast): it then runs in fp32; bf16 is fine.
        if dtype == torch.float16 and config.get("force_upcast", False):
            dtype = torch.float32
        try:
            # low_cpu_mem_usage=False: without `accelerate` diffusers would print a warning paragraph.
            vae = AutoencoderKL.from_pretrained(path, torch_dtype=dtype, low_cpu_mem_usage=False)
        except Exception as exc:
            raise _load_error("VAE", path, exc) from None
        vae.to(device).eval().requires_grad_(False)
        return cls(vae, path, file_digest(path / "config.json"))

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def describe(self) -> dict:
        return {"path": str(self.path), "config_digest": self.config_digest, "latent_channels": LATENT_CHANNELS,
                "scaling_factor": self.scaling_factor, "shift_factor": self.shift_factor,
                "dtype": str(self.dtype).split(".")[-1]}

    def encode(self, images: list[np.ndarray], batch_size: int | None = None) -> list[torch.Tensor]:
        """Each image's normalised latent, in input order; images of one size share batches of `batch_size`
        (None: all of one size at once)."""
        out: list[torch.Tensor | None] = [None] * len(images)
        for chunk in _size_batches([self._check(image) for image in images], batch_size):
            latents = self._forward(np.stack([images[i] for i in chunk]))
            for row, i in enumerate(chunk):
                out[i] = latents[row].clone()  # normal tensors, not views of the batch (see VLMEncoder)
        return out

    def _check(self, image: np.ndarray) -> tuple[int, int]:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"the VAE takes uint8 (H, W, 3) RGB images, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        if height % self.downsample or width % self.downsample:
            raise ValueError(f"image sides must be multiples of {self.downsample}, got {width}x{height}")
        return height, width

    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 16, H/8, W/8)."""
        x = torch.from_numpy(batch).to(self.device)  # uint8 over the bus, floats made on the device
        # (B, 3, H, W) in [-1, 1]; contiguous NCHW: a permuted (channels-last) view takes other conv kernels,
        # whose results differ in the last bits with the strides, i.e. with how the caller built the batch.
        x = x.permute(0, 3, 1, 2).contiguous().to(self.dtype) / 127.5 - 1.0
        z = self.vae.encode(x).latent_dist.mean  # (B, 16, H/8, W/8): the posterior mean, no sampling
        return (z - self.shift_factor) * self.scaling_factor

    def decode(self, latents: torch.Tensor | list[torch.Tensor], batch_size: int | None = None) -> list[np.ndarray]:
        """The inverse of `encode`: normalised latents -> uint8 (H, W, 3) RGB images, in input order.

        `latents` is one (B, 16, h, w) tensor, one (16, h, w) tensor or a list of (16, h, w) tensors (a
        list may mix sizes: latents of one size share batches of `batch_size`, None: all at once). Each is
        un-normalised (z / scale + shift, what encode's (z - shift) * scale undoes), decoded by the VAE,
        and mapped from [-1, 1] back to 0..255 (clamped, rounded)."""
        if isinstance(latents, torch.Tensor):
            latents = list(latents) if latents.dim() == 4 else [latents]
        for z in latents:
            if z.dim() != 3 or z.shape[0] != LATENT_CHANNELS:
                raise ValueError(f"the VAE decodes ({LATENT_CHANNELS}, h, w) latents, got {tuple(z.shape)}")
        out: list[np.ndarray | None] = [None] * len(latents)
        for chunk in _size_batches([tuple(z.shape[1:]) for z in latents], batch_size):
            images = self._decode(torch.stack([latents[i] for i in chunk]))
            for row, i in enumerate(chunk):
                out[i] = images[row]
        return out

    @torch.inference_mode()
    def _decode(self, z: torch.Tensor) -> np.ndarray:
        """(B, 16, h, w) normalised latents -> (B, h·8, w·8, 3) uint8."""
        z = z.to(self.device, self.dtype) / self.scaling_factor + self.shift_factor
        x = self.vae.decode(z).sample  # (B, 3, H, W), about [-1, 1]
        x = ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
        return np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())


# --------------------------------------------------------------------------- both

@dataclass
class Encoders:
    """Both encoders, as precompute and the loader's raw-shard path use them."""

    vlm: VLMEncoder
    vae: LatentEncoder

    @classmethod
    def load(cls, vlm_dir: str | Path, vae_dir: str | Path, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32, max_pixels: int | None = None) -> Encoders:
        check_vlm_dir(vlm_dir)  # both folders checked before either loads: a bad one fails fast
        check_vae_dir(vae_dir)
        return cls(VLMEncoder.load(vlm_dir, device, dtype, max_pixels), LatentEncoder.load(vae_dir, device, dtype))

    @property
    def hidden_size(self) -> int:
        return self.vlm.hidden_size

    def describe(self) -> dict:
        return {"vlm": self.vlm.describe(), "vae": self.vae.describe()}

    def encode_vlm(self, requests: list[VLMRequest], batch_size: int | None = None) -> list[torch.Tensor]:
        return self.vlm.encode(requests, batch_size)

    def encode_latents(self, images: list[np.ndarray], batch_size: int | None = None) -> list[torch.Tensor]:
        return self.vae.encode(images, batch_size)

    def unconditional_vlm(self) -> torch.Tensor:
        return self.vlm.unconditional()
