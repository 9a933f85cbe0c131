"""The training loop, readable top to bottom: build data, build model, step, evaluate, checkpoint.

``train(config)`` runs one config (or its stages in order) and returns a ``TrainResult``. Metrics
accumulate on the device and are read only when a record is written, so there is no per-step host
synchronisation. A run resumed from ``checkpoints/last.pt`` continues bit-identically on the CPU
(data order and augmentation are functions of (seed, epoch, index); see ``data.sampling``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..version import __version__
from ..data import load_datasets
from ..data.folders import RunSkips
from ..data.sampling import EpochSampler, SeededDataset
from ..errors import CheckpointError, ConfigError, TrainingInterrupted
from ..files import link_or_copy, write_json
from ..models.interface import check_input_size, unused_parameters
from ..models.loading import load_model
from ..models.registry import count_parameters, model_info
from ..models.weights import CHECKPOINT_FORMAT, load_weights, read_checkpoint
from . import distributed as dist
from .amp import autocast
from .checkpoint import (check_finite, disk_note, prune_epoch_snapshots, read_resume,
                         rng_state, set_rng_state, write_checkpoint)
from .config import TrainConfig
from .device_defaults import fit_device
from .evaluate import EvalResult, evaluate, logits_of, topk_correct
from .guard import NonFiniteGuard
from .optim import build_optimizer, build_scheduler
from .progress import plural, progress_bar, say
from .preempt import StopRequest
from .records import RunRecords
from .run_folder import RunFolder, check_ownership, check_writable
from .workers import training_workers


@dataclass
class TrainResult:
    run_dir: Path
    best_top1: float
    last_val: dict | None
    epochs: int
    model: nn.Module


def train(config: TrainConfig | dict | None = None, **overrides) -> TrainResult:
    """Train a registered model; see ``TrainConfig`` for every option."""
    if config is None:
        cfg = TrainConfig.build(**overrides)
    elif isinstance(config, dict):
        cfg = TrainConfig.from_dict({**config, **overrides})
    else:
        cfg = config.replace(**overrides) if overrides else config
    cfg.validate()
    if cfg.resume == "auto":  # a requeued job reruns the same command: continue if there is a run to continue
        if not cfg.output_path:
            raise ConfigError("--resume auto needs --output_path (the run folder to continue)")
        last = Path(cfg.output_path) / "checkpoints" / "last.pt"
        cfg = cfg.replace(resume=str(last) if last.is_file() and not cfg.stages else None)
    if not cfg.stages:
        return fit(cfg)
    return run_stages(cfg)


def run_stages(cfg: TrainConfig) -> TrainResult:
    """Each ``[[stage]]`` overrides the base config and starts from the previous stage's weights."""
    root = Path(cfg.output_path or default_output_path(cfg))
    result, weights = None, cfg.checkpoint
    for st in cfg.stages:
        opts = {k: v for k, v in st.items() if k != "name"}
        stage_cfg = cfg.replace(stages=[], stage=st["name"], output_path=str(root / st["name"]),
                                **({"checkpoint": weights} if weights else {}), **opts)
        stage_cfg.validate()
        last = Path(stage_cfg.output_path) / "checkpoints" / "last.pt"
        if last.is_file() and not stage_cfg.resume:
            done = read_checkpoint(last)
            if done.get("finished"):
                print(f"stage {st['name']}: already finished, skipping")
                weights = str(last)
                continue
            stage_cfg = stage_cfg.replace(resume=str(last))
        result = fit(stage_cfg)
        weights = str(Path(result.run_dir) / "checkpoints" / "last.pt")
    return result


def default_output_path(cfg: TrainConfig) -> str:
    return str(Path("runs") / f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model with its initial weights: fresh, pretrained, or a checkpoint (with a new head if asked)."""
    return load_model(cfg.model, checkpoint=cfg.checkpoint, pretrained=cfg.pretrained, num_classes=num_classes,
                      model_kwargs=cfg.model_kwargs, reset_classifier=cfg.reset_classifier,
                      trust=cfg.trust_checkpoint).model


def freeze(model: nn.Module, trainable: list[str]) -> None:
    """Train only parameters under the given module-name prefixes (empty list: everything)."""
    if not trainable:
        return
    names = [n for n, _ in model.named_parameters()]
    unknown = [t for t in trainable if not any(n == t or n.startswith(t + ".") for n in names)]
    if unknown:
        raise ConfigError(f"--trainable {unknown[0]!r} names no parameters of {model.info.name}")
    for n, p in model.named_parameters():
        p.requires_grad = any(n == t or n.startswith(t + ".") for t in trainable)


def resolve_trainable(model: nn.Module, trainable: list[str]) -> list[str]:
    """``"classifier"`` stands for the model's own classifier module (``fc``, ``decoder.linear``, ``10``...)."""
    return [getattr(model, "classifier_name", t) if t == "classifier" else t for t in trainable]


def set_train_mode(model: nn.Module, trainable: list[str], frozen_bn: str = "eval") -> None:
    """``model.train()``, but frozen parts stay in eval mode so their BatchNorm statistics do not move.

    ``frozen_bn="train"`` is plain ``model.train()``, as V1-ResNet ``main.py --mode finetune`` does: the
    frozen backbone's BatchNorms then normalise with batch statistics and keep updating their running
    statistics on the new dataset (docs/reference/v1_resnet.md section 4), and its dropout stays active."""
    model.train()
    if trainable and frozen_bn == "eval":
        for name, m in model.named_modules():
            if name and not any(name == t or name.startswith(t + ".") or t.startswith(name + ".") for t in trainable):
                m.eval()


def make_loader(ds, cfg: TrainConfig, shuffle: bool, dinfo: dist.DistInfo, device: torch.device) -> DataLoader:
    sampler = EpochSampler(len(ds), shuffle=shuffle, seed=cfg.seed, rank=dinfo.rank,
                           world_size=dinfo.world_size, batch_size=cfg.batch_size, pad=shuffle)
    return DataLoader(SeededDataset(ds, cfg.seed), batch_size=cfg.batch_size, sampler=sampler,
                      collate_fn=getattr(ds, "collate", None),
                      num_workers=cfg.workers if cfg.workers is not None else training_workers(),
                      pin_memory=device.type == "cuda",
                      persistent_workers=False, drop_last=False)


class Meters:
    """Sums kept on the device (the sample count on the host); ``read()`` is the only host sync."""

    def __init__(self, device):
        self.t = torch.zeros(4, dtype=torch.float64, device=device)  # loss*n, top1, top5, superclass hits
        self.n = 0
        self.has_super = False

    def add(self, loss, c1, c5, n: int, super_c=None):
        self.has_super |= super_c is not None
        sc = super_c if super_c is not None else c1.new_zeros(())
        self.t += torch.stack([loss.detach().double() * n, c1.double(), c5.double(), sc.double()])
        self.n += n

    def read(self) -> dict:
        loss, c1, c5, sc = self.t.tolist()
        n = max(self.n, 1)
        out = {"loss": loss / n, "top1": c1 / n, "top5": c5 / n}
        if self.has_super:
            out["super_top1"] = sc / n
        return out

    def state(self) -> list:
        return [*self.t.tolist(), self.n, self.has_super]

    def load(self, state: list) -> None:
        self.t.copy_(torch.tensor(state[:4], dtype=torch.float64))
        self.n = int(state[4])
        self.has_super = bool(state[5]) if len(state) > 5 else False

    def reset(self):
        self.t.zero_()
        self.n = 0


def fit(cfg: TrainConfig) -> TrainResult:
    """One training run: every input is checked, then the run folder is claimed, then the loop runs."""
    device = dist.pick_device(cfg.device)
    dinfo = dist.setup(device)
    if cfg.amp == "fp16" and device.type != "cuda":  # e.g. a GPU recipe tried on a laptop: keep it runnable
        if dinfo.is_main:
            print(f"note: amp fp16 needs CUDA; training in fp32 on {device.type} (pass --amp none to silence this)")
        cfg = cfg.replace(amp="none")
    cfg = fit_device(cfg, device)  # CUDA: workers, channels_last, cuDNN autotuning (CPU: unchanged)
    torch.manual_seed(cfg.seed)
    resume = read_resume(cfg.resume, trust=cfg.trust_checkpoint) if cfg.resume else None
    # --resume always writes beside its checkpoint; every run folder is stored as an absolute path
    run_dir = (Path(cfg.resume).resolve().parent.parent if cfg.resume
               else Path(cfg.output_path or default_output_path(cfg)).resolve())
    cfg = cfg.replace(output_path=str(run_dir))
    if dinfo.is_main:
        check_writable(run_dir)
        check_ownership(run_dir, resuming=resume is not None, overwrite=cfg.overwrite)

    # ---- data --------------------------------------------------------------------------------------
    info = model_info(cfg.model)
    splits = load_datasets(cfg.dataset, cfg.data_path, info, cfg.image_size, cfg.val_split, cfg.on_bad_image,
                           cfg.augment, cfg.eval_transform)
    num_classes = cfg.num_classes or len(splits.classes)
    train_set = splits.train
    if cfg.data_backend == "gpu":  # workers read bytes; decoding and crop/flip happen in images.to(device)
        from ..data.device_decode import RawCropDataset

        train_set = RawCropDataset(splits.train, cfg.image_size or info.input_size, info.mean, info.std)
    train_loader = make_loader(train_set, cfg, True, dinfo, device)
    # unreadable images (--on_bad_image skip) are dropped from their batches and listed in skipped.txt
    unread = RunSkips(run_dir, dinfo.rank if dinfo.enabled else 0, resuming=resume is not None)
    val_loader = make_loader(splits.val, cfg, False, dinfo, device)
    steps_per_epoch = len(train_loader)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)

    # ---- model, optimizer, schedule ----------------------------------------------------------------
    model = build_model(cfg, num_classes)
    check_input_size(model, cfg.image_size or info.input_size)
    cfg = cfg.replace(trainable=resolve_trainable(model, list(cfg.trainable)))
    freeze(model, cfg.trainable)
    if dinfo.enabled and cfg.sync_bn:
        if device.type != "cuda":  # PyTorch's SyncBatchNorm runs only on GPUs
            raise ConfigError("--sync_bn needs CUDA devices (PyTorch's SyncBatchNorm is GPU-only); drop it on the CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    clipping = cfg.clip_grad_value is not None or cfg.clip_grad_norm is not None
    clip_params = [p for g in optimizer.param_groups for p in g["params"]] if clipping else []
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    guard = NonFiniteGuard(cfg.on_nonfinite, device, model.parameters(), check_grads=cfg.amp != "fp16",
                           last_checkpoint=run_dir / "checkpoints" / "last.pt")
    mixer = build_mixer(cfg, num_classes)
    core = model  # the unwrapped model: what is saved and what owns head_loss
    head_loss = getattr(core, "head_loss", None)
    parent_targets = getattr(core, "parent_targets", None)

    start_epoch, start_step, global_step, best_top1 = 0, 0, 0, -1.0
    meters_state = None
    if resume is not None:
        if resume.get("model_name") != cfg.model:
            raise CheckpointError(f"--resume {cfg.resume} is a {resume.get('model_name')} run, not {cfg.model}")
        load_weights(core, resume["model"])
        check_finite(core, f"--resume {cfg.resume}")
        optimizer.load_state_dict(resume["optimizer"])
        saved_total = (resume.get("scheduler") or {}).get("total_steps")
        if cfg.scheduler == "onecycle" and saved_total not in (None, cfg.epochs * steps_per_epoch):
            raise ConfigError(f"--resume {cfg.resume}: its onecycle schedule spans {saved_total} steps, this run "
                              f"{cfg.epochs * steps_per_epoch} (--epochs or --max_steps_per_epoch changed); a "
                              "one-cycle schedule cannot be stretched: resume with the original values or start anew")
        scheduler.load_state_dict(resume["scheduler"])
        if resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        start_epoch, start_step = resume["epoch"], resume["step_in_epoch"]
        global_step, best_top1 = resume["global_step"], resume["best_top1"]
        guard.skipped = int(resume.get("skipped_steps") or 0)
        meters_state = resume.get("meters")
        set_rng_state(resume["rng"])
    if dinfo.enabled:
        unused = unused_parameters(core, cfg.image_size or info.input_size, device)
        if unused and dinfo.is_main:
            print(f"note: {plural(len(unused), 'parameter')} get no gradient in this configuration (e.g. {unused[0]}); "
                  "DDP looks for unused parameters every step")
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                    find_unused_parameters=bool(unused))
    forward = torch.compile(model) if cfg.compile else model
    # validation runs the unwrapped model under DDP: no collective inside a forward, so uneven shards are safe
    val_forward = core if dinfo.enabled else forward

    if dinfo.is_main:
        n_params, n_train = count_parameters(core), count_parameters(core, trainable_only=True)
        print(f"ventralkit {__version__}: training {cfg.model} ({n_params:,} parameters, {n_train:,} trainable) "
              f"on {plural(len(splits.train), 'image')}, {plural(num_classes, 'class')}, device {device}"
              + (f", {dinfo.world_size} processes" if dinfo.enabled else ""))
        print("config:\n" + cfg.describe())
        print(disk_note(core, optimizer, cfg))
        if resume is not None:
            print(resume_note(cfg, resume, steps_per_epoch))
    with RunFolder(run_dir, overwrite=cfg.overwrite and resume is None, enabled=dinfo.is_main) as folder, \
            StopRequest() as stop:
        dist.barrier()
        records = RunRecords(run_dir, enabled=dinfo.is_main, tensorboard=cfg.tensorboard)
        if dinfo.is_main:
            if resume is not None:
                records.truncate_after(global_step)
            saved = {"config": cfg.to_dict(), **cfg.to_dict(), "sources": cfg.sources,
                     "ventralkit_version": __version__, "git_commit": git_commit(), "num_params": n_params,
                     "num_trainable": n_train, "classes": splits.classes, "world_size": dinfo.world_size}
            write_json(run_dir / "config.json", saved)

        def checkpoint(path_name: str, epoch: int, step_in_epoch: int, finished: bool = False, meters=None,
                       weights_only: bool = False) -> None:
            """``last.pt`` holds everything to resume; ``best.pt`` the weights and what describes them."""
            guard.raise_if_diverged()  # never save non-finite weights (a host read, at save time only)
            if not dinfo.is_main:
                unread.save()  # this rank's own list
                return
            state = {
                "format": CHECKPOINT_FORMAT, "model_name": cfg.model, "num_classes": num_classes, "classes": splits.classes,
                "config": cfg.to_dict(), "model": core.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
                "global_step": global_step, "best_top1": best_top1, "finished": finished,
                "ventralkit_version": __version__,
            }
            if not weights_only:
                state.update({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "scaler": scaler.state_dict() if scaler.is_enabled() else None, "rng": rng_state(),
                              "meters": meters, "skipped_steps": guard.skipped})
            write_checkpoint(state, run_dir / "checkpoints" / path_name)
            folder.commit()  # there is something to resume from: the folder keeps what the run wrote
            unread.save()
        def validate() -> tuple[EvalResult, float]:
            guard.raise_if_diverged()
            t0 = time.perf_counter()
            if dinfo.enabled:  # every rank evaluates with rank 0's BatchNorm statistics: those that are saved
                dist.broadcast_buffers(core)
            if len(val_loader) > 0:
                res = evaluate(val_forward, val_loader, device=device, amp=cfg.amp, desc="val", progress=cfg.progress,
                               num_classes=num_classes, channels_last=cfg.channels_last)
                unread.add(res.skipped)
            else:  # a rank whose validation shard is empty (fewer images than ranks)
                res = EvalResult(0.0, 0.0, 0.0, 0, np.zeros(num_classes), np.zeros((num_classes, num_classes)),
                                 np.zeros(0, dtype=np.int64), None)
            if dinfo.enabled:  # combine the ranks' shards: sums of per-image quantities, then divide
                has_super = parent_targets is not None
                t = torch.tensor([res.loss * res.n, res.top1 * res.n, res.top5 * res.n,
                                  (res.super_top1 or 0.0) * res.n, res.n], dtype=torch.float64, device=device)
                dist.all_reduce_sum(t)
                n = max(t[4].item(), 1.0)
                res.loss, res.top1, res.top5, res.n = t[0].item() / n, t[1].item() / n, t[2].item() / n, int(t[4].item())
                res.super_top1 = t[3].item() / n if has_super else None
            return res, (time.perf_counter() - t0) / max(len(val_loader), 1)

        val_interval = max(1, round(cfg.val_every * steps_per_epoch))
        save_interval = cfg.save_every_minutes * 60
        last_val, last_save = None, time.monotonic()
        last_val_step = -1  # the global step of the latest validation
        total_steps = cfg.epochs * steps_per_epoch
        train_meters, epoch_meters = Meters(device), Meters(device)
        if meters_state is not None:
            train_meters.load(meters_state[0])
            epoch_meters.load(meters_state[1])
        bar = progress_bar(total=total_steps, initial=global_step, desc="train", enabled=cfg.progress and dinfo.is_main,
                           unit="step")
        first_step = global_step

        def stop_requested() -> bool:
            """Under DDP the ranks agree at log steps (one small all-reduce), so all stop at the same step."""
            if not dinfo.enabled:
                return stop.requested
            if global_step % cfg.log_every:
                return False
            flag = torch.tensor([float(stop.requested)], device=device)
            return dist.all_reduce_sum(flag).item() > 0

        try:
            for epoch in range(start_epoch, cfg.epochs):
                epoch_start, epoch_first_step = time.monotonic(), global_step
                set_train_mode(core, cfg.trainable, cfg.frozen_bn)
                train_loader.sampler.set_epoch(epoch, start_step)
                step_time, wait_time, n_timed = 0.0, 0.0, 0
                t_ready = time.perf_counter()
                step = start_step
                for images, target in map(unread.take, train_loader):
                    if step >= steps_per_epoch:
                        break
                    t_got = time.perf_counter()
                    if len(target) == 0:  # --on_bad_image skip dropped every image of this batch: no update
                        unread.check_empty_batch_allowed(dinfo.enabled)
                        applied = False
                    else:
                        images = images.to(device, non_blocking=True)
                        target = target.to(device, non_blocking=True)
                        if cfg.channels_last:
                            images = images.contiguous(memory_format=torch.channels_last)
                        soft = None
                        if mixer is not None:
                            images, soft = mixer(images, target)
                        with autocast(device, cfg.amp):
                            output = forward(images)
                            logits = logits_of(output)
                            if head_loss is not None:
                                loss = head_loss(output, soft if soft is not None else target)
                            else:
                                loss = criterion(logits, soft if soft is not None else target)
                        optimizer.zero_grad(set_to_none=True)
                        scaler.scale(loss).backward()
                        if clip_params:
                            scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
                            if cfg.clip_grad_value is not None:
                                torch.nn.utils.clip_grad_value_(clip_params, cfg.clip_grad_value)
                            if cfg.clip_grad_norm is not None:
                                torch.nn.utils.clip_grad_norm_(clip_params, cfg.clip_grad_norm)
                        applied = guard.step_ok(loss, global_step, epoch, step, scheduler.get_last_lr()[0])
                        if applied:
                            scaler.step(optimizer)
                            scaler.update()
                        else:  # --on_nonfinite skip: this step's update is dropped, as a grad scaler would
                            optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    if applied:
                        c1, c5 = topk_correct(logits.detach().float(), target)
                        sc = None
                        if parent_targets is not None and isinstance(output, dict) and "parent_logits" in output:
                            sc = output["parent_logits"].detach().argmax(1).eq(parent_targets(target)).sum()
                        train_meters.add(loss, c1, c5, len(target), sc)
                        epoch_meters.add(loss, c1, c5, len(target), sc)
                    global_step += 1
                    step += 1
                    t_done = time.perf_counter()
                    step_time += t_done - t_got
                    wait_time += t_got - t_ready
                    n_timed += 1
                    t_ready = t_done
                    bar.update(1)
                    epoch_float = epoch + step / steps_per_epoch
                    if global_step % cfg.log_every == 0 or step == steps_per_epoch:
                        guard.raise_if_diverged()
                        rec = {**train_meters.read(), "learning_rate": scheduler.get_last_lr()[0],
                               "dur": step_time / max(n_timed, 1), "data_load_dur": wait_time / max(n_timed, 1)}
                        if guard.skipped:
                            rec["skipped_steps"] = guard.skipped
                        records.log("train", epoch_float, global_step, rec)
                        bar.set_postfix(loss=f"{rec['loss']:.3f}", top1=f"{rec['top1']:.3f}")
                        train_meters.reset()
                        step_time, wait_time, n_timed = 0.0, 0.0, 0
                    if global_step % val_interval == 0 or global_step == total_steps:
                        res, val_dur = validate()
                        last_val, last_val_step = {**res.record(), "dur": val_dur}, global_step
                        records.log("val", epoch_float, global_step, last_val)
                        if res.top1 > best_top1:
                            best_top1 = res.top1
                            checkpoint("best.pt", epoch, step, weights_only=True)
                        set_train_mode(core, cfg.trainable, cfg.frozen_bn)
                    if step < steps_per_epoch and (save_interval <= 0 or time.monotonic() - last_save >= save_interval):
                        checkpoint("last.pt", epoch, step, meters=[train_meters.state(), epoch_meters.state()])
                        last_save = time.monotonic()
                    if stop_requested():
                        checkpoint("last.pt", epoch, step, meters=[train_meters.state(), epoch_meters.state()])
                        last = run_dir / "checkpoints" / "last.pt"
                        raise TrainingInterrupted(
                            f"stopped by {stop.name} at epoch {epoch + 1}, step {step} (global step {global_step}); "
                            f"saved {last}; resume with: ventralkit train --resume {last} (or rerun the same command "
                            "with --resume auto)", stop.signum or 15)
                # ---- end of epoch: summary row and checkpoints ------------------------------------------
                start_step = 0
                ep = epoch_meters.read()
                epoch_meters.reset()
                if dinfo.is_main:
                    records.epoch_row({"epoch": epoch + 1, "train_loss": ep["loss"], "train_top1": ep["top1"],
                                       "train_top5": ep["top5"], **({f"val_{k}": v for k, v in last_val.items()
                                                                     if k != "dur"} if last_val else {}),
                                       "learning_rate": scheduler.get_last_lr()[0],
                                       "epoch_seconds": round(time.monotonic() - epoch_start, 3)})
                    fresh_val = last_val if last_val_step > epoch_first_step else None  # validated in this epoch
                    say(epoch_line(epoch + 1, cfg.epochs, ep, fresh_val, time.monotonic() - epoch_start))
                finished = epoch + 1 == cfg.epochs
                checkpoint("last.pt", epoch + 1, 0, finished=finished, meters=[train_meters.state(), [0.0] * 6])
                last_save = time.monotonic()
                if cfg.keep_epochs != 0 and dinfo.is_main:  # the same bytes as last.pt: a hard link, not a copy
                    link_or_copy(run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / f"epoch_{epoch + 1:02d}.pt")
                    prune_epoch_snapshots(run_dir / "checkpoints", cfg.keep_epochs)
        except KeyboardInterrupt:
            if dinfo.is_main and (run_dir / "checkpoints" / "last.pt").is_file():
                print(f"aborted: nothing saved since the last checkpoint; resume with: ventralkit train --resume "
                      f"{run_dir / 'checkpoints' / 'last.pt'}", file=sys.stderr)
            raise
        finally:
            bar.close()
            records.close()

        if dinfo.is_main and global_step == first_step:  # resumed a finished run: nothing was trained
            print(f"run folder: {run_dir}")
        elif dinfo.is_main:
            from ..plots.curves import plot_runs

            try:
                plot_runs([run_dir], run_dir / "plots" / "curves.png")
            except Exception as err:  # a figure must never cost the run
                print(f"warning: could not draw curves: {err}")
            summary = f"done: {plural(cfg.epochs, 'epoch')}, best val top-1 {max(best_top1, 0):.4f}"
            if guard.skipped:
                summary += f", {guard.skipped} non-finite steps skipped"
            if len(unread):
                summary += (f", {len(unread)} unreadable image{'s' if len(unread) != 1 else ''} left out "
                            f"(listed in {unread.path})")
            if last_val:
                summary += f", last val top-1 {last_val['top1']:.4f} top-5 {last_val['top5']:.4f} loss {last_val['loss']:.4f}"
            print(summary)
            print(f"run folder: {run_dir}")
        dist.barrier()
        return TrainResult(run_dir, best_top1, last_val, cfg.epochs, core)


def epoch_line(epoch: int, epochs: int, train: dict, val: dict | None, seconds: float) -> str:
    """One line per finished epoch on stdout, so a run with ``--no_progress`` (or a log file) shows how it goes."""
    line = f"epoch {epoch}/{epochs}: train loss {train['loss']:.4f} top-1 {train['top1']:.4f}"
    if val:
        line += f", val loss {val['loss']:.4f} top-1 {val['top1']:.4f}"
    return f"{line}, {seconds:.1f} s"


def resume_note(cfg: TrainConfig, resume: dict, steps_per_epoch: int) -> str:
    """What a resume will do, in one line that agrees with what the loop then does: ``range(epoch, cfg.epochs)``
    is empty when the checkpoint is at or past ``--epochs`` (nothing to do), and a finished run given more
    ``--epochs`` trains on from where it ended (the schedule is that of the new epoch count)."""
    epoch, step = resume["epoch"], resume["step_in_epoch"]
    if epoch >= cfg.epochs:
        done = (f"is a finished run ({plural(epoch, 'epoch')})" if resume.get("finished") else
                f"has trained {plural(epoch, 'epoch')}" + (f" and {plural(step, 'step')}" if step else ""))
        return f"{cfg.resume} {done}; nothing to do with --epochs {cfg.epochs} (raise --epochs to train on)"
    if resume.get("finished"):
        return (f"extending the finished run {cfg.resume} ({plural(epoch, 'epoch')}) to {cfg.epochs} epochs: "
                f"epoch {epoch + 1} of {cfg.epochs} (global step {resume['global_step'] + 1})")
    return (f"resuming from {cfg.resume}: epoch {epoch + 1} of {cfg.epochs}, step {step + 1} of {steps_per_epoch} "
            f"(global step {resume['global_step'] + 1})")


def build_mixer(cfg: TrainConfig, num_classes: int):
    """CutMix / MixUp on the batch (torchvision.transforms.v2); returns soft targets."""
    if not cfg.mixup_alpha and not cfg.cutmix_alpha:
        return None
    from torchvision.transforms import v2

    choices = []
    if cfg.mixup_alpha:
        choices.append(v2.MixUp(alpha=cfg.mixup_alpha, num_classes=num_classes))
    if cfg.cutmix_alpha:
        choices.append(v2.CutMix(alpha=cfg.cutmix_alpha, num_classes=num_classes))
    mix = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
    return lambda images, target: mix(images, target)
