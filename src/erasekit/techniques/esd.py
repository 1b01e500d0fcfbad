"""ESD: Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023), fine-tuned as the official code trains it.

Each iteration (``iterations``, Adam at ``lr``, batch 1):

1. a concept word (one of ``erase_concept``, drawn at random) and a DDIM step
   ``t_enc ∈ [0, ddim_steps)``;
2. ``z``: the model *being trained* (``partway_model: trained``) samples part-way from the
   concept prompt, from Gaussian noise down to DDIM step ``t_enc`` (``ddim_steps − 1 − t_enc``
   steps of the ``ddim_steps`` schedule, η = 0) with classifier-free guidance
   ``start_guidance`` (no gradient);
3. the DDPM timestep the UNet sees: ``t ∈ [round(t_enc/ddim_steps·1000), round((t_enc+1)/ddim_steps·1000))``;
4. the frozen original predicts ``ε₀ = ε(z, t, "")`` and ``εc = ε(z, t, c)``; the trained model
   predicts ``ε' = ε_θ(z, t, c)``;
5. ``loss = MSE(ε', ε₀ − η·(εc − ε₀))`` with ``η = negative_guidance``: the model learns to
   predict, for the concept, the noise of *negative* guidance away from it.

``train_method`` picks what is trained (diffusers parameter names): ``xattn`` (ESD-x: every
``attn2`` parameter), ``noxattn`` (ESD-u: everything except ``attn2``, the time embedding and
the output layers ``conv_norm_out``/``conv_out`` — the official exclusion of ``out.`` and
``time_embed``; on SDXL also its ``add_embedding`` of pooled text and size ids, the same kind of layer), ``selfattn`` (``attn1``), ``full`` (everything). Defaults are the official ones
of ``train-esd.py`` (η 1, 1000 iterations, lr 1e-5, 50 DDIM steps, start guidance 3).

Three options come from the authors' later diffusers script (``esd_sd.py``). Its target
``εc − η'·(εc − ε₀)`` is ours with ``η = η' − 1`` (its default η' = 2 is our η = 1).

* ``xattn_strict`` (its ``esd-x-strict``) trains only ``attn2.to_k``/``attn2.to_v``, the
  projections of the text, so no image-side weight moves.
* ``partway_model: frozen`` samples the part-way latents with the frozen original rather than
  with the model being trained.
* ``erase_in`` (its ``--erase_from``, here a list with one prompt ``f`` drawn per iteration)
  samples part-way from ``f``. The trained model is asked about ``f``, and the target is
  ``ε(f) − (η + 1)·(εc − ε₀)``: the concept's direction is removed from ``f``'s own prediction,
  so what ``f`` says besides the concept (a colour, a setting) stays in the target. With
  ``f`` = the concept this is the loss above.

Deliberate differences: ``z`` lies exactly at the noise level of the timestep the UNet is
asked about (DDIM step ``t_enc`` ↔ DDPM ``20·t_enc + 1`` on 50 steps); the official CompVis
sampler's dropped first step and stop index leave it about two DDIM steps away. Every random draw (word, ``t_enc``, ``t``, the start noise) comes from one
``torch.Generator`` seeded with ``seed``, so a run is reproducible (the official code uses the
global generators); training runs on a float32 copy of the UNet whatever the pipeline's dtype
(the official code trains in float32), and the result is copied back into the pipeline.
Checkpoints (``save_path`` / ``load_path``) are the full UNet state dict with the shared
atomic-write contract of :class:`~erasekit.techniques.editing.WeightEdit`: the file is written
only after the last iteration, so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from erasekit.errors import TechniqueError
from erasekit.models.conditioning import Conditioning, encode_condition, unet_output, weight_dtype
from erasekit.registry import TECHNIQUES
from erasekit.techniques.editing import EditConfig, WeightEdit, as_list

log = logging.getLogger(__name__)

ESD_VERSION = 1
TRAIN_METHODS = ("xattn", "xattn_strict", "noxattn", "selfattn", "full")


class ESDConfig(EditConfig):
    train_method: Literal["xattn", "xattn_strict", "noxattn", "selfattn", "full"] = Field(
        "xattn", description="what is trained: ESD-x (xattn), ESD-x-strict (xattn_strict: attn2 to_k/to_v), ESD-u (noxattn) …")
    negative_guidance: float = Field(1.0, ge=0.0, le=100.0, description="η: guidance away from the concept in the target")
    iterations: int = Field(1000, ge=1, le=1_000_000, description="training iterations (batch 1)")
    lr: float = Field(1e-5, gt=0.0, le=1.0, description="Adam learning rate")
    ddim_steps: int = Field(50, ge=1, le=1000, description="DDIM schedule of the part-way sampling")
    start_guidance: float = Field(3.0, ge=0.0, le=100.0, description="classifier-free guidance of the part-way sampling")
    partway_model: Literal["trained", "frozen"] = Field(
        "trained", description="who samples the part-way latents: the model being trained (train-esd.py) or the frozen original (esd_sd.py)")
    erase_in: list[str] | None = Field(
        None, description="prompts the concept is erased in (esd_sd.py's --erase_from); default: the concept itself")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of every random draw of the training")

    @field_validator("erase_in")
    @classmethod
    def _erase_in_prompts(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or any(not f.strip() for f in v)):
            raise ValueError("erase_in must be null or a non-empty list of non-empty prompts")
        return v


def trainable_parameters(unet: Any, method: str) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters ``train_method`` trains (name rules in the module docstring)."""
    out = []
    for name, p in unet.named_parameters():
        if method == "xattn":
            keep = "attn2" in name
        elif method == "xattn_strict":
            keep = ".attn2.to_k." in name or ".attn2.to_v." in name
        elif method == "selfattn":
            keep = "attn1" in name
        elif method == "noxattn":
            keep = not ("attn2" in name or name.startswith(("time_embedding.", "add_embedding.", "conv_out.", "conv_norm_out.")))
        elif method == "full":
            keep = True
        else:
            raise ValueError(f"unknown train_method {method!r}; use one of {TRAIN_METHODS}")
        if keep:
            out.append((name, p))
    return out


def esd_target(e0: torch.Tensor, ec: torch.Tensor, eta: float) -> torch.Tensor:
    """ε₀ − η·(εc − ε₀): the frozen model's negatively guided noise."""
    return e0 - eta * (ec - e0)


def esd_loss(trained: Any, frozen: Any, z: torch.Tensor, t: torch.Tensor, emb_c: Conditioning | torch.Tensor,
             emb_0: Conditioning | torch.Tensor, eta: float, emb_from: Conditioning | torch.Tensor | None = None) -> torch.Tensor:
    """MSE(ε_θ(z, t, c), ε₀ − η·(εc − ε₀)) with ε₀, εc from the frozen original (no gradient).

    With ``emb_from`` (a prompt of ``erase_in``): MSE(ε_θ(z, t, f), ε(f) − (η + 1)·(εc − ε₀)).

    ``emb_*`` is the family's conditioning (:mod:`erasekit.models.conditioning`; a bare tensor is an
    SD 1.x/2.x context). On a v-prediction model (SD 2.x-768) the three outputs are velocities; the
    target is the same affine combination of them (weights 1 + η and −η sum to 1), which is the
    velocity of the negatively guided noise, so the objective carries over unchanged.
    """
    with torch.no_grad():
        e0 = unet_output(frozen, z, t, emb_0).float()
        ec = unet_output(frozen, z, t, emb_c).float()
        target = esd_target(e0, ec, eta) if emb_from is None else unet_output(frozen, z, t, emb_from).float() - (eta + 1) * (ec - e0)
    en = unet_output(trained, z.float(), t, emb_c if emb_from is None else emb_from)
    return torch.nn.functional.mse_loss(en, target)


def ddpm_timestep(t_enc: int, ddim_steps: int, gen: torch.Generator) -> int:
    """A DDPM timestep inside DDIM step ``t_enc``'s interval of the 1000-step schedule."""
    lo = round(t_enc / ddim_steps * 1000)
    hi = round((t_enc + 1) / ddim_steps * 1000)
    return int(torch.randint(lo, max(hi, lo + 1), (1,), generator=gen))


@TECHNIQUES.register("esd", description="ESD fine-tuning: negative guidance away from the concept, learned by the UNet (minutes).")
class ESD(WeightEdit):
    """ESD fine-tuning: negative guidance away from the concept, learned by the UNet (minutes)."""

    Config = ESDConfig
    label = "ESD"
    identity_key = "esd"
    edit_fields = ("train_method", "negative_guidance", "iterations", "lr", "ddim_steps", "start_guidance", "partway_model", "erase_in", "seed")
    config: ESDConfig

    def edit_payload(self) -> dict[str, Any]:
        c = self.config
        payload = {"esd_version": ESD_VERSION, "erase": as_list(c.erase_concept),
                   **{k: getattr(c, k) for k in self.edit_fields}}
        for k, default in (("partway_model", "trained"), ("erase_in", None)):
            if payload[k] == default:  # fields added later: fingerprints from before they existed stay valid
                del payload[k]
        return payload

    # -------------------------------------------------------------- training

    def edit(self, pipe: Any) -> dict[str, Any]:
        from diffusers import DDIMScheduler

        from erasekit.models.loading import sampler_defaults

        cfg = self.config
        frozen = pipe.unet
        device = frozen.device
        trained = copy.deepcopy(frozen).train()
        if next(trained.parameters()).dtype != torch.float32:  # train in float32 whatever the pipeline runs in
            for p in trained.parameters():
                p.data = p.data.float()
        params = trainable_parameters(trained, cfg.train_method)
        if not params:
            raise TechniqueError(f"ESD: train_method {cfg.train_method!r} selects no parameter of this UNet")
        for p in trained.parameters():
            p.requires_grad_(False)
        for _, p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam([p for _, p in params], lr=cfg.lr)
        words = [w.strip() for w in as_list(cfg.erase_concept)]
        gen = torch.Generator("cpu").manual_seed(cfg.seed)
        size_px = sampler_defaults(cfg.model_id).height
        size = size_px // pipe.vae_scale_factor
        shape = (1, frozen.config.in_channels, size, size)
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(cfg.ddim_steps, device=device)
        empty = encode_condition(pipe, [""], height=size_px, width=size_px)[0].to(torch.float32)
        sources = [f.strip() for f in cfg.erase_in] if cfg.erase_in else []
        embeds = {w: encode_condition(pipe, [w], height=size_px, width=size_px)[0].to(torch.float32) for w in {*words, *sources}}
        t0 = time.perf_counter()
        losses: list[float] = []
        with _progress(cfg.iterations) as advance:
            for _ in range(cfg.iterations):
                word = words[int(torch.randint(len(words), (1,), generator=gen))]
                t_enc = int(torch.randint(cfg.ddim_steps, (1,), generator=gen))
                t_ddpm = ddpm_timestep(t_enc, cfg.ddim_steps, gen)
                start = torch.randn(shape, generator=gen).to(device)
                emb_c = embeds[word]
                emb_from = embeds[sources[int(torch.randint(len(sources), (1,), generator=gen))]] if sources else None
                prompt = emb_c if emb_from is None else emb_from  # what is sampled part-way and asked of the trained model
                with torch.no_grad():  # z at the noise level of t: ddim_steps − 1 − t_enc steps from pure noise
                    sampler = trained if cfg.partway_model == "trained" else frozen
                    z = _sample_till(sampler, scheduler, start, prompt, empty, cfg.start_guidance, cfg.ddim_steps - 1 - t_enc)
                loss = esd_loss(trained, frozen, z, torch.tensor([t_ddpm], device=device), emb_c, empty, cfg.negative_guidance,
                                emb_from)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                advance(losses[-1])
        seconds = time.perf_counter() - t0
        trained.eval()
        with torch.no_grad():
            dtype = weight_dtype(frozen)
            frozen.load_state_dict({k: v.to(dtype) for k, v in trained.state_dict().items()})
        del trained, opt
        n_params = sum(p.numel() for _, p in params)
        return {
            "train_method": cfg.train_method,
            "trained_parameters": n_params,
            "trained_tensors": len(params),
            "iterations": cfg.iterations,
            "seconds_training": round(seconds, 3),
            "seconds_per_iteration": round(seconds / cfg.iterations, 5),
            "loss_first": round(losses[0], 6),
            "loss_last_100_mean": round(sum(losses[-100:]) / len(losses[-100:]), 6),
        }


def _sample_till(unet: Any, scheduler: Any, start: torch.Tensor, cond: Conditioning, uncond: Conditioning, guidance: float,
                 steps: int) -> torch.Tensor:
    """``steps`` DDIM steps (η = 0) of the ``scheduler`` schedule from ``start`` with CFG."""
    latents = start * scheduler.init_noise_sigma
    emb = Conditioning.cat([uncond, cond])
    for t in scheduler.timesteps[:steps]:
        x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        e_u, e_c = unet_output(unet, x, t, emb).chunk(2)
        latents = scheduler.step(e_u + guidance * (e_c - e_u), t, latents, eta=0.0, return_dict=False)[0]
    return latents


class _progress:
    """A progress bar with the loss on a terminal; a log line every 10 % otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Any = None
        self.done = 0

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("ESD"), BarColumn(), TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"),
                                TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("esd", total=self.total, loss="-")
        return self.advance

    def advance(self, loss: float) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, loss=f"{loss:.5f}")
        elif self.done % max(1, self.total // 10) == 0:
            log.info("ESD: iteration %d/%d, loss %.5f", self.done, self.total, loss)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
