"""Images: crops and normalisation, the frozen feature pass, the pixel baseline, and prediction from files;
reading and decoding the files is modalities/image_files.py.

    x = preprocess(batch_uint8, spec)                      # float, normalised, channels-last
    ImageModality()                                        # the Modality (modalities/base.py) for images
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from headstart.core.dataset import LabeledSet, display_name
from headstart.core.errors import UserError
from headstart.core.io import cache_dir_of
from headstart.models.bnfold import folded_batchnorm
from headstart.models.device import bf16_autocast, loader_kwargs, native_bf16, to_device, to_numpy
from headstart.modalities.base import ModalityBase, ModalityState, expand_inputs, standardised_logreg, top_k
from headstart.modalities.image_files import (IMAGE_EXTS, load_image_folder, read_image_file, read_images,
                                              thumbnail)


def preprocess(x: torch.Tensor, spec) -> torch.Tensor:
    """uint8 NCHW batch -> normalised float NCHW (channels-last memory: faster convolutions on CPU and GPU)."""
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1) * 255
    return ((x.float() - mean) / std).contiguous(memory_format=torch.channels_last)


class ImageTensors(Dataset):
    """Decoded uint8 images -> (uint8 crop, label). Train: random resized crop (+ flip); eval: centre crop.
    resize_to(s) switches to s px crops (progressive resizing: eval resizes the short side first, so an s px
    crop shows what the full-size crop shows)."""

    def __init__(self, images, labels, indices, size: int, augment: str = "none", crop_scale: float = 0.35,
                 short_side: int = 0):
        self.images, self.labels, self.indices = images, labels, list(indices)
        self.streamed = getattr(images, "streamed", False)     # decoded per access: DataLoader workers help
        self.augment, self.crop_scale, self.full = augment, crop_scale, size
        self.short_side = short_side or size          # the decoded images' shorter side (size / crop_pct)
        self.resize_to(size)

    def resize_to(self, size: int) -> None:
        from torchvision.transforms import v2
        self.size = size
        if self.augment == "none":
            shrink = [] if size == self.full else [v2.Resize(round(size * self.short_side / self.full),
                                                             antialias=True)]
            self.tf = v2.Compose(shrink + [v2.CenterCrop(size)]) if shrink else v2.CenterCrop(size)
        else:
            ops = [v2.RandomResizedCrop(size, scale=(self.crop_scale, 1.0), antialias=True)]
            if self.augment == "crop-flip":
                ops.append(v2.RandomHorizontalFlip())
            self.tf = v2.Compose(ops)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        j = self.indices[i]
        return self.tf(self.images[j]), self.labels[j]


def feature_dtype(requested: str, device: str = "cpu") -> str:
    """The dtype of the frozen feature pass: "auto" = bfloat16 on a GPU or on a CPU with native bf16 (AVX512-BF16 /
    AMX: about 2x faster than float32 on hymenoptera at the same probe accuracy, benchmarks/README.md), else float32."""
    if requested != "auto":
        return requested
    return "bfloat16" if native_bf16(device) else "float32"


@torch.inference_mode()
def embed(model, spec, images, size: int, batch_size: int = 64, dtype: str = "float32", progress=None,
          device: str = "cpu") -> np.ndarray:
    """Pre-logit features of every image (centre crop), model in eval mode, channels-last, autocast to `dtype`."""
    from torch.utils.data import DataLoader
    model.eval()
    model = model.to(device=device, memory_format=torch.channels_last)
    ds = ImageTensors(images, [0] * len(images), range(len(images)), size)
    loader = DataLoader(ds, batch_size=batch_size, **loader_kwargs("cpu", 0, ds.streamed))
    out = []
    for x, _ in loader:
        with bf16_autocast(device, dtype == "bfloat16"):
            f = model.forward_head(model.forward_features(preprocess(to_device(x, model), spec)), pre_logits=True)
        out.append(to_numpy(f))
        if progress:
            progress(len(x))
    return np.concatenate(out).astype(np.float32)


class ImageModality(ModalityBase):
    name = "image"
    default_backbone = "efficientnet_lite0"
    folder_exts = IMAGE_EXTS
    file_exts: set[str] = set()
    cpu_bf16_training = False   # Lite0 training step in bf16 on the CPU: 9.5 vs 15.8 img/s (depthwise convolutions)
    unit_gib = 4.2              # peak memory of one scratch unit at 224 px (benchmarks/README.md)
    batchnorm_shift = True
    # near-duplicate check: 16 distinct hymenoptera photos at 32 px gave 4 near pairs (2 "leaks", 2 "conflicts";
    # --dedupe dropped 2); at 64, 96 and 224 px none
    min_near_dup_size = 64
    near_dup_kind = ""          # near copies by embedding are leaks / conflicts / duplicates like exact ones
    # top 2 block groups, body LR 10x below the head, 0.3x per group deeper (on hymenoptera the reference LP-FT
    # used 3e-5; BatchNorm statistics stay frozen)
    defaults = {"epochs": 10, "lr_body": 1e-4, "lr_decay": 0.3, "unfreeze_groups": 2, "unfreeze_every": 1,
                "scratch_lr": 3e-3, "round_items": -1}

    def load(self, cfg, spec, size, progress=None):
        return load_image_folder(cfg.data, short_side=spec.short_side(size), label_col=cfg.label_col,
                                 group_col=cfg.group_col, progress=progress, cache_dir=cache_dir_of(cfg))

    def prepare(self, ds, spec, size, cfg) -> ModalityState:
        return ModalityState()

    def dataset(self, data, indices, train: bool = False):
        cfg = data.cfg
        return ImageTensors(data.ds.items, data.ds.labels, indices, data.size, cfg.augment if train else "none",
                            cfg.crop_scale, data.spec.short_side(data.size))

    def progressive_sizes(self, data, budget: int) -> list[int] | None:
        """Input size per epoch for a network trained from random weights: the first half of the budget at half the
        input size (a multiple of 16; 224 -> 112 px), the rest at full size: progressive resizing, as in fastai and
        EfficientNetV2's progressive learning (which starts at 128 px for 300 px). The racing decision falls in the
        cheap half. Measured, one Lite0 training step on 2 CPU cores: 21 images/s at 224 px, 92 at 128, 116 at 112
        (5.5x). None below 160 px, where the saving is small."""
        low = max(64, 16 * round(data.size / 32))
        if data.size < 160 or low >= data.size or budget < 2:
            return None
        return [low] * (budget // 2) + [data.size] * (budget - budget // 2)

    def batch_fn(self, data):
        return lambda x: preprocess(x, data.spec)

    def embed(self, data, model, progress=None):
        return embed(model, data.spec, data.ds.items, data.size, progress=progress, dtype=self.feature_dtype(data),
                     device=str(data.device))

    def feature_dtype(self, data) -> str:
        return feature_dtype(data.cfg.feature_dtype, str(data.device))

    def feature_variant(self, data) -> str:
        return self.feature_dtype(data)

    def raw_features(self, data, indices):
        """What scratch starts from, for the assessment's k-NN: 24x24 centre-cropped pixels, mean image removed."""
        raw = self.classic_inputs(data, indices)
        return raw - raw.mean(0)

    def classic_inputs(self, data, indices=None):
        """Each image centre-cropped to a square and shrunk to 24x24 RGB: the pixels a classic model sees (kept
        from reading the folder, modalities/image_files.thumbnail)."""
        thumbs = getattr(data.ds.items, "thumbs", None)
        if thumbs is None:                 # items given as a plain list of tensors
            thumbs = np.stack([thumbnail(x) for x in data.ds.items])
        return thumbs if indices is None else thumbs[np.asarray(indices, dtype=int)]

    def classic_pipeline(self, C: float, seed: int):
        """24x24 RGB pixels, standardised, logistic regression: the no-pretraining baseline for small images."""
        return standardised_logreg(C, seed)


    def finetune_advice(self, early_shift: bool) -> str:
        return ("unfreeze deeper than the top 2 block groups (e.g. \"unfreeze_groups\": 4 in a --config file): "
                "early layers see unfamiliar statistics" if early_shift
                else "unfreeze the top 2 block groups at a low learning rate")


    def input_description(self, size: int) -> str:
        return f"input {size} px"

    def picture(self, path, size: int = 96) -> bytes | None:
        """A thumbnail (longest side `size` px) for the error gallery."""
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
        return buf.getvalue()

    def read_unlabelled(self, inputs: list[str], spec, size: int) -> LabeledSet:
        """Image files or folders without labels (for `headstart suggest`), read like the training images (a pool
        larger than the decoded-image budget is decoded again per batch)."""
        files = expand_inputs(inputs, IMAGE_EXTS, "image")
        images, good, bad = read_images(files, spec.short_side(size))
        ds = LabeledSet(root=Path("."), classes=[])
        ds.skipped = [{"path": display_name(str(files[k])), "reason": why} for k, why in sorted(bad.items())]
        for k, digest in zip(good, images.hashes):
            ds.add(display_name(str(files[k])), -1, "", digest)
        ds.items = images
        return ds

    def predict(self, model_dir, model, spec, classes, inputs, top, batch_size, runtime, options=None) -> list[dict]:
        from torchvision.transforms.v2.functional import center_crop
        files = expand_inputs(inputs, IMAGE_EXTS, "image")
        rows: list[dict] = [{} for _ in files]     # input order, whatever the batching
        batch = []
        _, run = image_runner(model_dir, model, runtime)

        def flush():
            if not batch:
                return
            x = torch.stack([center_crop(t, [spec.input_size] * 2) for _, _, t in batch])
            for (k, path, _), p in zip(batch, run(preprocess(x, spec)).softmax(1)):
                rows[k] = {"path": display_name(str(path)), **top_k(p, classes, top)}
            batch.clear()

        for k, f in enumerate(files):
            ok, reason = read_image_file(f, spec.short_side())
            if ok is None:
                rows[k] = {"path": display_name(str(f)), "error": reason}
                continue
            batch.append((k, f, torch.from_numpy(ok[0].transpose(2, 0, 1).copy())))
            if len(batch) == batch_size:
                flush()
        flush()
        return rows


def image_runner(model_dir: str | Path, model, runtime: str = "auto"):
    """(name, function: normalised NCHW float tensor -> logits tensor): ONNX Runtime when the folder has model.onnx
    and onnxruntime is installed (runtime auto|onnx), else PyTorch eager."""
    onnx_file = Path(model_dir) / "model.onnx"
    if runtime in ("auto", "onnx") and onnx_file.exists():
        try:
            import onnxruntime as ort
        except ImportError:
            if runtime == "onnx":
                raise UserError("--runtime onnx needs ONNX Runtime: pip install onnxruntime") from None
        else:
            sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
            return "onnxruntime", lambda x: torch.from_numpy(sess.run(None, {"x": to_numpy(x)})[0])
    elif runtime == "onnx":
        raise UserError(f"{model_dir} has no model.onnx; re-export with onnx installed, or use --runtime torch")

    def eager(x):
        with torch.inference_mode(), folded_batchnorm(model):
            return model(x)
    return "pytorch", eager
