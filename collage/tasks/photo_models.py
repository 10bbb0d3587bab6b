"""Local transformers models that label background photos for reference samples: depth and semantic segmentation.

Models are read from local folders saved with `save_pretrained` (config.json, weights, preprocessor_config.json),
never downloaded (`local_files_only=True`). Each worker process loads a model once (`functools.lru_cache`) and runs
it on CPU with one torch thread (a worker is one core, as `collage.worker.tune_worker_process` sets OpenCV).

- depth: any `AutoModelForDepthEstimation` (DPT, Depth Anything, GLPN, ZoeDepth, …); `estimate_depth` gives uint8,
  255 = near, min-max normalised per image.
- segmentation: any `AutoModelForSemanticSegmentation` (Segformer, UperNet, DPT, BEiT, MobileViT, …) or a
  MaskFormer / Mask2Former checkpoint (`AutoModelForUniversalSegmentation`); `segment` gives one class id per
  pixel through the processor's `post_process_semantic_segmentation` (logits resized to the photo, then argmax),
  with the class names of the model's `config.id2label`.

Transformers is imported only here and only when a model option is given: runs without one never need torch.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os

import numpy as np

from ..errors import UserError

DEPTH_MODEL_OPTION = "depth_model"
SEG_MODEL_OPTION = "seg_model"
# model_type values of segmentation checkpoints that are not AutoModelForSemanticSegmentation models but whose
# processors still give a semantic map (post_process_semantic_segmentation)
UNIVERSAL_SEG_TYPES = ("maskformer", "mask2former")
KINDS = {DEPTH_MODEL_OPTION: "depth-estimation", SEG_MODEL_OPTION: "semantic-segmentation"}


def _transformers(option: str):
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:
        raise UserError(f"option {option} needs torch and transformers (pip install 'collage[model]')") from exc
    return transformers


def _model_classes(option: str) -> dict[str, str]:
    """{model_type: model class name} of the models an option takes."""
    from transformers.models.auto import modeling_auto

    if option == DEPTH_MODEL_OPTION:
        return dict(modeling_auto.MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES)
    universal = modeling_auto.MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES
    return {**modeling_auto.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES,
            **{t: universal[t] for t in UNIVERSAL_SEG_TYPES if t in universal}}


def check_model_folder(path: str, option: str) -> None:
    """Run-config validation of a model option: a local save_pretrained folder of the right kind of model.

    Reads config.json only (no weights, no torch model), so a wrong folder or the wrong kind of model is one
    line before any shard starts, not a failure in every worker."""
    kind = KINDS[option]
    files = "config.json, weights, preprocessor_config.json"
    if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "config.json")):
        raise UserError(f"option {option}={path!r} is not a model folder saved with save_pretrained ({files})")
    if not os.path.exists(os.path.join(path, "preprocessor_config.json")):
        raise UserError(f"option {option}={path!r} has no preprocessor_config.json: save the model's image processor "
                        "there too (processor.save_pretrained)")
    try:
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        model_type, architectures = config.get("model_type"), config.get("architectures") or []
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"option {option}={path!r}: config.json is not readable json ({exc})") from None
    _transformers(option)
    classes = _model_classes(option)
    # A model type can have several heads (DPT: depth and segmentation): the saved architecture tells which.
    fits = model_type in classes and (not architectures or classes[model_type] in architectures)
    if not fits:
        what = f"{model_type!r} model" + (f" ({', '.join(map(str, architectures))})" if architectures else "")
        raise UserError(f"option {option}={path!r} holds a {what}, not a {kind} model "
                        f"(e.g. {', '.join(list(classes)[:4])}, …)")


def check_depth_model(path: str) -> None:
    check_model_folder(path, DEPTH_MODEL_OPTION)


def check_seg_model(path: str) -> None:
    check_model_folder(path, SEG_MODEL_OPTION)


@contextlib.contextmanager
def one_thread():
    """Torch on one thread while a worker's model runs (restored after: a test process keeps its own)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _load(path: str, option: str, auto_class: str):
    transformers = _transformers(option)
    check_model_folder(path, option)
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True)
        model = getattr(transformers, auto_class).from_pretrained(path, local_files_only=True).eval()
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"option {option}={path!r}: cannot load the model ({first})") from None
    return processor, model


@functools.lru_cache(maxsize=2)
def load_depth_model(path: str):
    """(image processor, model) of a transformers depth-estimation model saved at a local path."""
    return _load(path, DEPTH_MODEL_OPTION, "AutoModelForDepthEstimation")


@functools.lru_cache(maxsize=2)
def load_seg_model(path: str):
    """(image processor, model) of a transformers semantic-segmentation model saved at a local path."""
    with open(os.path.join(path, "config.json")) as f:
        universal = json.load(f).get("model_type") in UNIVERSAL_SEG_TYPES
    auto = "AutoModelForUniversalSegmentation" if universal else "AutoModelForSemanticSegmentation"
    processor, model = _load(path, SEG_MODEL_OPTION, auto)
    if not hasattr(processor, "post_process_semantic_segmentation"):
        raise UserError(f"option {SEG_MODEL_OPTION}={path!r}: its image processor ({type(processor).__name__}) "
                        "cannot make a semantic map (no post_process_semantic_segmentation)")
    return processor, model


def model_name(path: str) -> str:
    """What the json calls the model: its folder's name."""
    return os.path.basename(os.path.normpath(path))


def model_outputs_distance(model) -> bool:
    """True for metric models (larger = farther); relative ones (DPT, Depth Anything) give larger = nearer."""
    config = model.config
    return getattr(config, "depth_estimation_type", "relative") == "metric" or config.model_type == "zoedepth"


def estimate_depth(rgb: np.ndarray, path: str) -> np.ndarray:
    """uint8 (H, W), 255 = near: the model's prediction resized to the image and min-max normalised."""
    import torch

    processor, model = load_depth_model(path)
    with one_thread(), torch.inference_mode():
        inputs = processor(images=rgb, return_tensors="pt")
        predicted = model(**inputs).predicted_depth
        predicted = torch.nn.functional.interpolate(predicted.reshape(1, 1, *predicted.shape[-2:]).float(),
                                                    size=rgb.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    depth = predicted.numpy().astype(np.float64)
    if model_outputs_distance(model):
        depth = -depth
    lo, hi = float(depth.min()), float(depth.max())
    scaled = (depth - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(depth)
    return np.round(scaled).astype(np.uint8)


def segment(rgb: np.ndarray, path: str) -> tuple[np.ndarray, dict[int, str]]:
    """(int32 (H, W) class ids, {class id: label}): the model's semantic map of the image at its own size."""
    import torch

    processor, model = load_seg_model(path)
    with one_thread(), torch.inference_mode():
        inputs = processor(images=rgb, return_tensors="pt")
        outputs = model(**inputs)
        labels = processor.post_process_semantic_segmentation(outputs, target_sizes=[rgb.shape[:2]])[0]
    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    return labels.numpy().astype(np.int32), id2label
