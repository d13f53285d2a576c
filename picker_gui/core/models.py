"""Fully convolutional particle classifiers, and how they are saved.

A model maps a normalised, downsampled micrograph to a per-pixel logit ("is a particle
centred here?"). Every convolution is *valid* (no padding): a tile of ``T + R - 1`` pixels
gives ``T`` scores, where ``R`` is the receptive field. Training on tiles and scoring whole
micrographs (padded by ``R // 2``) then compute exactly the same function, with no border
effects learned on the training tiles.

Dilated convolutions give the receptive field without pooling, so the score map stays at
the full downsampled resolution (Topaz instead pools and then "fills" the model with
dilation for inference).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

#: Layer specs, (kernel, dilation) per convolution, by name. The name is the receptive field.
ARCHITECTURES: dict[str, tuple[tuple[int, int], ...]] = {
    "conv31": ((5, 1), (3, 1), (3, 2), (3, 4), (3, 6)),
    "conv47": ((5, 1), (3, 1), (3, 2), (3, 4), (3, 8), (3, 6)),
    "conv71": ((7, 1), (5, 1), (3, 2), (3, 4), (3, 8), (3, 16)),
}
#: Pooled architectures: a strided convolution (stride 2) from the full-resolution image,
#: then dilated convolutions at half resolution, whose scores are repeated back to full
#: resolution. A quarter of the work of the full-resolution trunk for the same receptive
#: field, so several times the training steps in the same time (on a CPU the first layer,
#: with one input channel, is the least efficient one). Spec: (stem kernel, layers).
POOLED_ARCHITECTURES: dict[str, tuple[int, tuple[tuple[int, int], ...]]] = {
    "pool34": (6, ((3, 1), (3, 1), (3, 2), (3, 3))),
    "pool50": (6, ((3, 1), (3, 1), (3, 2), (3, 4), (3, 3))),
    "pool74": (6, ((3, 1), (3, 1), (3, 2), (3, 4), (3, 6), (3, 3))),
}
MODEL_FORMAT_VERSION = 1


def receptive_field(layers) -> int:
    """Receptive field of a layer spec: a tuple of (kernel, dilation), or a pooled spec
    (stem kernel, layers) of :data:`POOLED_ARCHITECTURES`."""
    if isinstance(layers, str):
        layers = ARCHITECTURES.get(layers) or POOLED_ARCHITECTURES[layers]
    if len(layers) == 2 and isinstance(layers[0], int):
        stem, rest = layers
        return stem + 2 * sum((k - 1) * d for k, d in rest)
    return 1 + sum((k - 1) * d for k, d in layers)


def known_architectures() -> list[str]:
    return sorted([*ARCHITECTURES, *POOLED_ARCHITECTURES])


def choose_architecture(diameter_px: float, pooled: bool = False) -> tuple[str, str]:
    """The smallest architecture whose receptive field spans about twice the particle
    (the particle and a ring of its surroundings, as Topaz's 71 px does for ~35 px
    particles), and why; from :data:`POOLED_ARCHITECTURES` with ``pooled``."""
    family = POOLED_ARCHITECTURES if pooled else ARCHITECTURES
    want = 2.0 * diameter_px
    for name in sorted(family, key=receptive_field):
        rf = receptive_field(name)
        if rf >= want:
            return name, f"receptive field {rf} px covers twice the {diameter_px:.1f}-px particle"
    name = max(family, key=receptive_field)
    rf = receptive_field(name)
    return name, f"largest receptive field ({rf} px); the {diameter_px:.1f}-px particle would need more downsampling"


class PickerNet(nn.Module):
    """Dilated valid convolutions with batch norm, then a 1x1 classifier head.

    Parameters
    ----------
    architecture
        A key of :data:`ARCHITECTURES`.
    width
        Channels of every hidden layer.
    """

    def __init__(self, architecture: str = "conv47", width: int = 32) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES and architecture not in POOLED_ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; expected one of {known_architectures()}")
        self.architecture = architecture
        self.width = width
        self.pooled = architecture in POOLED_ARCHITECTURES

        def block(channels: int, kernel: int, dilation: int) -> list[nn.Module]:
            return [nn.Conv2d(channels, width, kernel, dilation=dilation, bias=False), nn.BatchNorm2d(width), nn.PReLU(width)]

        layers: list[nn.Module] = []
        if self.pooled:
            stem, spec = POOLED_ARCHITECTURES[architecture]
            self.stem = nn.Sequential(nn.Conv2d(1, width, stem, stride=2, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))
            channels = width
        else:
            spec = ARCHITECTURES[architecture]
            channels = 1
        for kernel, dilation in spec:
            layers += block(channels, kernel, dilation)
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Conv2d(width, width, 1),
            nn.PReLU(width),
            nn.Conv2d(width, 1, 1),
        )
        # Start at a low positive rate, as a picker should: most pixels are not particle centres.
        nn.init.constant_(self.classifier[-1].bias, -4.0)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.architecture)

    def _to_full(self, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Half-resolution maps repeated to the output size of a pooled model."""
        out_h, out_w = x.shape[-2] - self.receptive_field + 1, x.shape[-1] - self.receptive_field + 1
        f = f.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        if f.shape[-2] < out_h or f.shape[-1] < out_w:  # an odd output size: repeat the last row/column
            f = F.pad(f, (0, out_w - f.shape[-1], 0, out_h - f.shape[-2]), mode="replicate")
        return f[..., :out_h, :out_w]

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Features at every output pixel: ``[B, 1, H, W]`` -> ``[B, width, H - R + 1, W - R + 1]``."""
        if not self.pooled:
            return self.features(x)
        return self._to_full(self.features(self.stem(x)), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, H, W]`` -> logits ``[B, 1, H - R + 1, W - R + 1]``."""
        if not self.pooled:
            return self.classifier(self.features(x))
        return self._to_full(self.classifier(self.features(self.stem(x))), x)


# -- saving and loading ------------------------------------------------------------------
@dataclass
class SavedModel:
    """A model with what it needs to pick new data the same way."""

    model: PickerNet
    metadata: dict[str, Any]


#: Metadata entries that say which program wrote a file, not what the model is: left out of
#: :func:`model_id`, so that an identity computed before saving holds after loading.
_NOT_IDENTITY = ("model_id", "format_version", "picker_gui_version")


def _identity_metadata(model: PickerNet, metadata: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in metadata.items() if k not in _NOT_IDENTITY}
    meta.update(architecture=model.architecture, width=model.width, receptive_field=model.receptive_field)
    return meta


def model_id(saved: SavedModel) -> str:
    """A short, stable identity of a model: 16 hex digits of SHA-256 over its metadata (JSON,
    sorted keys) and every tensor of its state_dict (name, dtype, shape and bytes, in key
    order).

    Picks carry it to say which model made them. It is the same before saving and after
    loading (:func:`save_model` stores it as ``metadata["model_id"]``, :func:`load_model`
    recomputes it) and changes when any weight or metadata entry changes; the entries that
    only name the writing program (format and picker-gui version) are left out.
    """
    digest = hashlib.sha256()
    meta = _identity_metadata(saved.model, saved.metadata)
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name, tensor in sorted(saved.model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def save_model(path: str | PathLike, model: PickerNet, metadata: dict[str, Any]) -> Path:
    """Save a state_dict and plain metadata (architecture, downsampling, pixel size,
    normalisation, particle diameter, objective, pi, label counts, version, and the
    :func:`model_id` that picks made with it carry).

    The file is written under a unique temporary name beside ``path`` and renamed over it
    (:func:`~picker_gui.core.paths.atomic_path`), so a crash, a full disk or Ctrl-C never
    leaves half a model behind, nor a stray temporary file.
    """
    from picker_gui import __version__
    from picker_gui.core.paths import atomic_path

    path = Path(path)
    meta = _identity_metadata(model, metadata)
    meta.update(
        model_id=model_id(SavedModel(model, meta)),
        format_version=MODEL_FORMAT_VERSION,
        picker_gui_version=__version__,
    )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "metadata": meta}, tmp)
    return path


def load_model(path: str | PathLike, device: str | torch.device = "cpu") -> SavedModel:
    """Load a model saved by :func:`save_model` (``weights_only``: no pickled code runs).

    ``metadata["model_id"]`` is recomputed from what was read (:func:`model_id`), so a file
    saved before model ids existed gets one, and the id always describes these weights.

    Raises
    ------
    PickerError
        ``"<path>: not a picker-gui model (not a file saved by 'picker-gui train')"``, with the
        cause added only where it tells the user something (an entry that is missing, weights
        that do not fit the architecture); torch's unpickling text is never shown.
    """
    from picker_gui.core.errors import PickerError

    path = Path(path)
    if not path.exists():
        raise PickerError(f"{path}: no such model file")
    if path.is_dir():
        raise PickerError(f"{path}: is a folder, not a model file (give the .pt file saved by 'picker-gui train')")
    not_a_model = f"{path}: not a picker-gui model (not a file saved by 'picker-gui train'"
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except OSError as exc:
        raise PickerError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception:  # noqa: BLE001 - not a torch file, or one holding pickled code: the same to a user
        raise PickerError(not_a_model + ")") from None
    if not isinstance(blob, dict) or "metadata" not in blob or "state_dict" not in blob:
        missing = "it is not a dictionary" if not isinstance(blob, dict) else (
            "no " + " and no ".join(repr(k) for k in ("state_dict", "metadata") if k not in blob) + " entry")
        raise PickerError(f"{not_a_model}; {missing})")
    meta = blob["metadata"]
    if not isinstance(meta, dict) or "architecture" not in meta or "width" not in meta:
        raise PickerError(f"{not_a_model}; its metadata lacks the architecture)")
    if int(meta.get("format_version", 0)) > MODEL_FORMAT_VERSION:
        raise PickerError(f"{path}: saved by a newer picker-gui (model format {meta['format_version']}); "
                          f"update picker-gui to use it")
    if meta["architecture"] not in ARCHITECTURES and meta["architecture"] not in POOLED_ARCHITECTURES:
        raise PickerError(f"{not_a_model}; unknown architecture {meta['architecture']!r})")
    try:
        model = PickerNet(meta["architecture"], int(meta["width"]))
        model.load_state_dict(blob["state_dict"])
    except Exception:  # noqa: BLE001 - torch lists every mismatched tensor; one line says enough
        raise PickerError(f"{not_a_model}; its weights do not fit the {meta['architecture']} "
                          f"architecture of width {meta['width']})") from None
    model.to(device).eval()
    saved = SavedModel(model, dict(meta))
    saved.metadata["model_id"] = model_id(saved)
    return saved
