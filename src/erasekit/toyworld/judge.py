"""The toy judge: a small CNN that classifies shape (or "none") and colour.

Like a real detector it flags only what it sees: it was trained with an
explicit "none" class (blank, noise, blob, partial and tiny renders), so a
smudge is not forced into a shape class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .render import COLOURS, SHAPES

SHAPE_CLASSES = (*SHAPES, "none")


@dataclass
class JudgeOutput:
    shape: str  # one of SHAPES or "none" (no clear shape)
    shape_conf: float
    colour: str
    colour_conf: float
    shape_probs: dict[str, float] = field(default_factory=dict)
    colour_probs: dict[str, float] = field(default_factory=dict)


def _block(cin: int, cout: int, n_convs: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ToyJudge(nn.Module):
    def __init__(self, channels: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        self.channels = tuple(channels)
        layers: list[nn.Module] = []
        cin = 3
        for i, c in enumerate(channels):
            layers.append(_block(cin, c, 1 if i == 0 else 2))  # one conv at full resolution (cheap)
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = c
        self.features = nn.Sequential(*layers)
        self.shape_head = nn.Linear(cin, len(SHAPE_CLASSES))
        self.colour_head = nn.Linear(cin, len(COLOURS))

    @property
    def config(self) -> dict:
        return {"channels": list(self.channels), "shape_classes": list(SHAPE_CLASSES), "colours": list(COLOURS)}

    @staticmethod
    def preprocess(images) -> torch.Tensor:
        """PIL images / uint8 NHWC array / float NCHW tensor in [0,1] -> normalised NCHW float tensor."""
        if isinstance(images, torch.Tensor):
            x = images.float()
            if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] != 3:
                x = x.permute(0, 3, 1, 2)
            if x.max() > 1.5:
                x = x / 255.0
        else:
            if isinstance(images, np.ndarray):
                arr = images
            else:
                arr = np.stack([np.asarray(im.convert("RGB").resize((32, 32))) for im in images])
            if arr.ndim == 3:
                arr = arr[None]
            x = torch.from_numpy(np.ascontiguousarray(arr)).float().permute(0, 3, 1, 2) / 255.0
        return x * 2.0 - 1.0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x).mean(dim=(2, 3))
        return self.shape_head(h), self.colour_head(h)

    @torch.no_grad()
    def predict(self, images, batch_size: int = 256) -> list[JudgeOutput]:
        self.eval()
        x = self.preprocess(images)
        dev = next(self.parameters()).device
        outs: list[JudgeOutput] = []
        for i in range(0, len(x), batch_size):
            ls, lc = self(x[i : i + batch_size].to(dev))
            ps, pc = ls.softmax(-1).cpu().numpy(), lc.softmax(-1).cpu().numpy()
            for a, b in zip(ps, pc, strict=True):
                si, ci = int(a.argmax()), int(b.argmax())
                outs.append(
                    JudgeOutput(
                        shape=SHAPE_CLASSES[si],
                        shape_conf=float(a[si]),
                        colour=COLOURS[ci],
                        colour_conf=float(b[ci]),
                        shape_probs={k: float(v) for k, v in zip(SHAPE_CLASSES, a, strict=True)},
                        colour_probs={k: float(v) for k, v in zip(COLOURS, b, strict=True)},
                    )
                )
        return outs

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(p / "model.safetensors"))
        (p / "config.json").write_text(json.dumps(self.config, indent=2))


def load_judge(device: str | torch.device = "cpu", path: str | Path | None = None) -> ToyJudge:
    """Load the shipped judge (or one from ``path``) in eval mode."""
    from safetensors.torch import load_file

    if path is None:
        from . import JUDGE_DIR

        path = JUDGE_DIR
    p = Path(path)
    if not (p / "model.safetensors").exists():
        raise FileNotFoundError(f"toy judge weights not found in {p}; run `python -m erasekit.toyworld.train --out DIR`")
    cfg = json.loads((p / "config.json").read_text())
    judge = ToyJudge(tuple(cfg["channels"]))
    judge.load_state_dict(load_file(str(p / "model.safetensors")))
    return judge.to(device).eval()
