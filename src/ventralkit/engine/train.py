"""The training loop, readable top to bottom.

    train(config)                 the config, validated once; one run, or its [[stage]]s in order
      fit(cfg)                    one run:
        run = setup(cfg)          every input checked and every object built (data, model, optimiser,
                                  schedule, the resumed state) before anything is written
        in the run folder:        config.json, then for each epoch and batch:
          train_step(run, ...)    one optimiser step, its metrics added on the device
          after_step(run, ...)    records, validation and checkpoints when they are due; a stop request
          end_epoch(run, ...)     the epoch's row, line, checkpoint and snapshot
        finish(run)               the summary

Metrics accumulate on the device and are read only when a record is written, so there is no per-step
host synchronisation. A run resumed from ``checkpoints/last.pt`` continues bit-identically on the CPU
(data order and augmentation are functions of (seed, epoch, index), see ``data.sampling``; every global
generator is seeded, saved and restored, see ``checkpoint``). The engine writes records only: a run's
figure (``plots/curves.png``) is drawn from them by the caller (``plots.curves.draw_run_curves``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..data import load_datasets
from ..data.folders import RunSkips
from ..data.sampling import EpochSampler, SeededDataset
from ..errors import CheckpointError, ConfigError, TrainingInterrupted
from ..files import RunPaths, link_or_copy, write_json
from ..models.interface import check_input_size, unused_parameters
from ..models.loading import load_model
from ..models.preprocessing import Preprocessing, training_preprocessing
from ..models.registry import count_parameters
from ..models.sources import model_info_for, run_folder_name
from ..models.weights import CHECKPOINT_FORMAT, load_weights
from ..version import __version__
from . import distributed as dist
from .amp import autocast
from .checkpoint import (check_finite, disk_note, prune_epoch_snapshots, read_resume, rng_state, seed_everything,
                         set_rng_state, write_checkpoint)
from .config import TrainConfig
from .device_defaults import fit_device
from .evaluate import EvalResult, evaluate, logits_of, topk_correct
from .guard import NonFiniteGuard
from .optim import build_optimizer, build_scheduler
from .preempt import StopRequest, leave_quietly_on_sigterm
from .progress import plural, progress_bar, say
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
    #: the run folders this call trained steps in (a staged run: each stage that trained; a finished run
    #: resumed with nothing to do: none), whose figures the caller draws; on the main process only
    trained: list[Path] = field(default_factory=list)


# ---- one config, or its stages -------------------------------------------------------------------------
def train(config: TrainConfig | dict | None = None, *, resume_state: dict | None = None,
          **overrides) -> TrainResult:
    """Train a registered model; see ``TrainConfig`` for every option.

    ``resume_state``: the ``--resume`` checkpoint when the caller has read it already (the command line
    takes the run's config from it), so the file is read once."""
    if config is None:
        cfg = TrainConfig.build(**overrides)
    elif isinstance(config, dict):
        cfg = TrainConfig.from_dict({**config, **overrides})
    else:
        cfg = config.replace(**overrides) if overrides else config
    cfg.validate()  # the one validation of this config (each stage's own is validated by run_stages)
    if cfg.resume == "auto":  # a requeued job reruns the same command: continue if there is a run to continue
        if not cfg.output_path:
            raise ConfigError("--resume auto needs --output_path (the run folder to continue)")
        last = RunPaths(cfg.output_path).last
        cfg = cfg.replace(resume=str(last) if last.is_file() and not cfg.stages else None)
    if not cfg.stages:
        return fit(cfg, resume_state)
    return run_stages(cfg)


def run_stages(cfg: TrainConfig) -> TrainResult:
    """Each ``[[stage]]`` overrides the base config and starts from the previous stage's weights."""
    root = Path(cfg.output_path or default_output_path(cfg))
    result, weights, trained = None, cfg.checkpoint, []
    for st in cfg.stages:
        opts = {k: v for k, v in st.items() if k != "name"}
        stage_cfg = cfg.replace(stages=[], stage=st["name"], output_path=str(root / st["name"]),
                                **({"checkpoint": weights} if weights else {}), **opts)
        stage_cfg.validate()
        last, state = RunPaths(stage_cfg.output_path).last, None
        if last.is_file() and not stage_cfg.resume:
            state = read_resume(last, trust=stage_cfg.trust_checkpoint)  # read once: finished? else resume it
            if state.get("finished"):
                print(f"stage {st['name']}: already finished, skipping")
                weights = str(last)
                continue
            stage_cfg = stage_cfg.replace(resume=str(last))
        result = fit(stage_cfg, state)
        trained += result.trained
        weights = str(RunPaths(result.run_dir).last)
    if result is not None:
        result.trained = trained
    return result


def default_output_path(cfg: TrainConfig) -> str:
    return str(Path("runs") / f"{run_folder_name(cfg.model)}-{time.strftime('%Y%m%d-%H%M%S')}")


# ---- the state of one run ------------------------------------------------------------------------------
@dataclass
class Position:
    """Where the run is: what a checkpoint saves and a resume restores."""

    epoch: int = 0  # the epoch being trained, from 0 (after it: the number of epochs finished)
    step: int = 0  # steps finished in this epoch
    global_step: int = 0
    best_top1: float = -1.0


@dataclass
class Data:
    """The datasets' loaders and what the run needs to know about them."""

    pre: Preprocessing  # how images are prepared: stored in checkpoints and config.json
    classes: list[str]
    train_images: int
    num_classes: int
    train_loader: DataLoader
    val_loader: DataLoader
    steps_per_epoch: int
    unread: RunSkips  # unreadable images (--on_bad_image skip), dropped from their batches, in skipped.txt


@dataclass
class Run:
    """Everything one training run works with, built by ``setup`` before anything is written."""

    cfg: TrainConfig
    dinfo: dist.DistInfo
    device: torch.device
    paths: RunPaths
    resume: dict | None  # the checkpoint this run continues, if any
    data: Data
    core: nn.Module  # the unwrapped model: what is saved and what owns head_loss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    guard: NonFiniteGuard
    criterion: nn.Module
    mixer: object  # CutMix / MixUp, or None
    train_meters: Meters  # since the last train record
    epoch_meters: Meters  # since the start of the epoch
    clip_params: list = field(default_factory=list)
    forward: nn.Module | None = None  # what trains: ``core``, wrapped by DDP and/or torch.compile
    val_forward: nn.Module | None = None  # what validates: ``core`` under DDP (no collective in a forward)
    at: Position = field(default_factory=Position)
    last_val: dict | None = None
    last_val_step: int = -1  # the global step of the latest validation
    last_save: float = 0.0  # time.monotonic() of the latest last.pt
    # set once the run folder is claimed (``fit``)
    folder: RunFolder | None = None
    stop: StopRequest | None = None
    records: RunRecords | None = None
    bar: object = None

    @property
    def total_steps(self) -> int:
        return self.cfg.epochs * self.data.steps_per_epoch

    @property
    def is_main(self) -> bool:
        return self.dinfo.is_main


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


# ---- setup: everything checked and built before anything is written ------------------------------------
def setup(cfg: TrainConfig, resume_state: dict | None = None) -> Run:
    """The run's state, built in the order that makes the first problem the one reported."""
    device = dist.pick_device(cfg.device)
    dinfo = dist.setup(device)
    cfg = device_config(cfg, device, dinfo.is_main)
    seed_everything(cfg.seed)  # torch, numpy and Python: a run is a function of its seed
    resume = resume_state
    if resume is None and cfg.resume:
        resume = read_resume(cfg.resume, trust=cfg.trust_checkpoint)
    # --resume always writes beside its checkpoint; every run folder is stored as an absolute path
    paths = RunPaths(Path(cfg.resume).resolve().parent.parent if cfg.resume
                     else Path(cfg.output_path or default_output_path(cfg)).resolve())
    cfg = cfg.replace(output_path=str(paths.root))
    if dinfo.is_main:
        check_writable(paths.root)
        check_ownership(paths.root, resuming=resume is not None, overwrite=cfg.overwrite)
    data = build_data(cfg, dinfo, device, paths, resuming=resume is not None)

    model = build_model(cfg, data.num_classes)
    check_input_size(model, data.pre.image_size)
    cfg = cfg.replace(trainable=resolve_trainable(model, list(cfg.trainable)))
    freeze(model, cfg.trainable)
    model = place_model(model, cfg, device, dinfo)
    optimizer = build_optimizer(model.parameters(), cfg)
    run = Run(cfg=cfg, dinfo=dinfo, device=device, paths=paths, resume=resume, data=data, core=model,
              optimizer=optimizer, scheduler=build_scheduler(optimizer, cfg, data.steps_per_epoch),
              scaler=torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16"),
              guard=NonFiniteGuard(cfg.on_nonfinite, device, model.parameters(), check_grads=cfg.amp != "fp16",
                                   last_checkpoint=paths.last),
              criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
              mixer=build_mixer(cfg, data.num_classes), train_meters=Meters(device), epoch_meters=Meters(device))
    if cfg.clip_grad_value is not None or cfg.clip_grad_norm is not None:
        run.clip_params = [p for g in optimizer.param_groups for p in g["params"]]
    if resume is not None:
        restore(run, resume)
    wrap_model(run)
    return run


def device_config(cfg: TrainConfig, device: torch.device, is_main: bool) -> TrainConfig:
    """The config as this device runs it: fp16 falls back to fp32 off CUDA (a GPU recipe tried on a laptop
    stays runnable, with a note); on CUDA ``fit_device`` fills in workers and channels_last."""
    if cfg.amp == "fp16" and device.type != "cuda":
        if is_main:
            print(f"note: amp fp16 needs CUDA; training in fp32 on {device.type} (pass --amp none to silence this)")
        cfg = cfg.replace(amp="none")
    return fit_device(cfg, device)


def build_data(cfg: TrainConfig, dinfo: dist.DistInfo, device: torch.device, paths: RunPaths,
               resuming: bool) -> Data:
    """Datasets and loaders; an image folder is listed and checked here, before the model is built."""
    info = model_info_for(cfg.model, cfg.weights)  # a torchvision/timm model: its weights' preprocessing
    splits = load_datasets(cfg.dataset, cfg.data_path, info, cfg.image_size, cfg.val_split, cfg.on_bad_image,
                           cfg.augment, cfg.eval_transform)
    pre = training_preprocessing(info, cfg.image_size or splits.image_size, cfg.eval_transform)
    train_set = splits.train
    if cfg.data_backend == "gpu":  # workers read bytes; decoding and crop/flip happen in images.to(device)
        from ..data.transforms import device_train_dataset

        train_set = device_train_dataset(splits.train, pre)
    train_loader = make_loader(train_set, cfg, True, dinfo, device)
    unread = RunSkips(paths.root, dinfo.rank if dinfo.enabled else 0, resuming=resuming)
    steps_per_epoch = len(train_loader)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    return Data(pre=pre, classes=splits.classes, train_images=len(splits.train),
                num_classes=cfg.num_classes or len(splits.classes), train_loader=train_loader,
                val_loader=make_loader(splits.val, cfg, False, dinfo, device), steps_per_epoch=steps_per_epoch,
                unread=unread)


def make_loader(ds, cfg: TrainConfig, shuffle: bool, dinfo: dist.DistInfo, device: torch.device) -> DataLoader:
    """Batches in the order of (seed, epoch), each augmented from (seed, epoch, index) (``data.sampling``).

    The loader has its own generator: a DataLoader draws a base seed each time an iterator starts (every
    epoch, and again when a resumed run restarts its epoch), and drawn from torch's global generator that
    would move the stream the training step draws from (CutMix/MixUp, dropout), so a run resumed inside an
    epoch would go on with other random numbers than the run it continues."""
    sampler = EpochSampler(len(ds), shuffle=shuffle, seed=cfg.seed, rank=dinfo.rank,
                           world_size=dinfo.world_size, batch_size=cfg.batch_size, pad=shuffle)
    return DataLoader(SeededDataset(ds, cfg.seed), batch_size=cfg.batch_size, sampler=sampler,
                      collate_fn=getattr(ds, "collate", None),
                      num_workers=cfg.workers if cfg.workers is not None else training_workers(),
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed),
                      persistent_workers=False, drop_last=False, worker_init_fn=leave_quietly_on_sigterm)


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model with its initial weights: fresh, pretrained, or a checkpoint (with a new head if asked)."""
    return load_model(cfg.model, checkpoint=cfg.checkpoint, pretrained=cfg.pretrained, weights=cfg.weights,
                      num_classes=num_classes, model_kwargs=cfg.model_kwargs, reset_classifier=cfg.reset_classifier,
                      trust=cfg.trust_checkpoint).model


def resolve_trainable(model: nn.Module, trainable: list[str]) -> list[str]:
    """``"classifier"`` stands for the model's own classifier module (``fc``, ``decoder.linear``, ``10``...)."""
    return [getattr(model, "classifier_name", t) if t == "classifier" else t for t in trainable]


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


def place_model(model: nn.Module, cfg: TrainConfig, device: torch.device, dinfo: dist.DistInfo) -> nn.Module:
    """The model on its device, in its memory format (and with SyncBatchNorm under DDP when asked)."""
    if dinfo.enabled and cfg.sync_bn:
        if device.type != "cuda":  # PyTorch's SyncBatchNorm runs only on GPUs
            raise ConfigError("--sync_bn needs CUDA devices (PyTorch's SyncBatchNorm is GPU-only); drop it on the CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


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


def restore(run: Run, resume: dict) -> None:
    """Continue where the checkpoint stopped: weights, optimiser, schedule, scaler, counters, meters and the
    generators (restored last, so the run goes on with the very random streams it was saved with)."""
    cfg = run.cfg
    if resume.get("model_name") != cfg.model:
        raise CheckpointError(f"--resume {cfg.resume} is a {resume.get('model_name')} run, not {cfg.model}")
    load_weights(run.core, resume["model"])
    check_finite(run.core, f"--resume {cfg.resume}")
    run.optimizer.load_state_dict(resume["optimizer"])
    saved_total = (resume.get("scheduler") or {}).get("total_steps")
    if cfg.scheduler == "onecycle" and saved_total not in (None, run.total_steps):
        raise ConfigError(f"--resume {cfg.resume}: its onecycle schedule spans {saved_total} steps, this run "
                          f"{run.total_steps} (--epochs or --max_steps_per_epoch changed); a "
                          "one-cycle schedule cannot be stretched: resume with the original values or start anew")
    run.scheduler.load_state_dict(resume["scheduler"])
    if resume.get("scaler"):
        run.scaler.load_state_dict(resume["scaler"])
    run.at = Position(resume["epoch"], resume["step_in_epoch"], resume["global_step"], resume["best_top1"])
    run.guard.skipped = int(resume.get("skipped_steps") or 0)
    if resume.get("meters") is not None:
        run.train_meters.load(resume["meters"][0])
        run.epoch_meters.load(resume["meters"][1])
    set_rng_state(resume["rng"])


def wrap_model(run: Run) -> None:
    """DDP (told about parameters this configuration never uses) and torch.compile around the model."""
    model, cfg = run.core, run.cfg
    if run.dinfo.enabled:
        unused = unused_parameters(run.core, run.data.pre.image_size, run.device)
        if unused and run.is_main:
            print(f"note: {plural(len(unused), 'parameter')} get no gradient in this configuration (e.g. {unused[0]}); "
                  "DDP looks for unused parameters every step")
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device.index] if run.device.type == "cuda" else None,
            find_unused_parameters=bool(unused))
    run.forward = torch.compile(model) if cfg.compile else model
    # validation runs the unwrapped model under DDP: no collective inside a forward, so uneven shards are safe
    run.val_forward = run.core if run.dinfo.enabled else run.forward


def announce(run: Run) -> None:
    """What is trained, on what, with which options, the disk it needs and what a resume will do."""
    cfg, core = run.cfg, run.core
    n_params, n_train = count_parameters(core), count_parameters(core, trainable_only=True)
    print(f"ventralkit {__version__}: training {cfg.model} ({n_params:,} parameters, {n_train:,} trainable) "
          f"on {plural(run.data.train_images, 'image')}, {plural(run.data.num_classes, 'class')}, device "
          f"{run.device}" + (f", {run.dinfo.world_size} processes" if run.dinfo.enabled else ""))
    print("config:\n" + cfg.describe())
    print(disk_note(core, run.optimizer, cfg))
    if run.resume is not None:
        print(resume_note(cfg, run.resume, run.data.steps_per_epoch))


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


# ---- one run ------------------------------------------------------------------------------------------
def fit(cfg: TrainConfig, resume_state: dict | None = None) -> TrainResult:
    """One training run: every input is checked, then the run folder is claimed, then the loop runs."""
    run = setup(cfg, resume_state)
    if run.is_main:
        announce(run)
    with RunFolder(run.paths.root, overwrite=run.cfg.overwrite and run.resume is None,
                   enabled=run.is_main) as run.folder, StopRequest() as run.stop:
        dist.barrier()
        open_records(run)
        run.last_save, first_step = time.monotonic(), run.at.global_step
        run.bar = progress_bar(total=run.total_steps, initial=first_step, desc="train", unit="step",
                               enabled=run.cfg.progress and run.is_main)
        try:
            while run.at.epoch < run.cfg.epochs:
                train_epoch(run)
        except RuntimeError as err:
            # a scheduler's SIGTERM to the whole job (timeout, scancel, preemption) also reaches the data-loading
            # workers, which leave quietly (preempt.leave_quietly_on_sigterm); the main process then finds them gone
            # while it waits for a batch, at a step boundary (or in a validation, which changes no weight): save as
            # usual. Under DDP the ranks would have to agree first, so there the error stands.
            if run.stop.requested and not run.dinfo.enabled and "DataLoader worker" in str(err):
                raise stop_now(run) from None
            raise
        except KeyboardInterrupt:
            if run.is_main and run.paths.last.is_file():
                print(f"aborted: nothing saved since the last checkpoint; resume with: ventralkit train --resume "
                      f"{run.paths.last}", file=sys.stderr)
            raise
        finally:
            run.bar.close()
            run.records.close()
        result = finish(run, trained=run.at.global_step > first_step)
        dist.barrier()
        return result


def open_records(run: Run) -> None:
    """The run's records (on resume, cut back to the checkpoint) and its ``config.json``."""
    cfg = run.cfg
    run.records = RunRecords(run.paths.root, enabled=run.is_main, tensorboard=cfg.tensorboard)
    if not run.is_main:
        return
    if run.resume is not None:
        run.records.truncate_after(run.at.global_step)
    write_json(run.paths.config, {
        "config": cfg.to_dict(), **cfg.to_dict(), "sources": cfg.sources, "ventralkit_version": __version__,
        "git_commit": git_commit(), "num_params": count_parameters(run.core),
        "num_trainable": count_parameters(run.core, trainable_only=True), "classes": run.data.classes,
        "world_size": run.dinfo.world_size, "preprocessing": run.data.pre.to_dict(),
        "model_source": run.core.info.extra.get("source")})  # where the initial weights came from (load_model)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


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


class StepTimer:
    """Seconds in training steps and waiting for batches since the last train record (its ``dur`` and
    ``data_load_dur``, per step)."""

    def __init__(self):
        self.ready = time.perf_counter()  # when the previous step ended (or the epoch began)
        self.got = self.ready
        self.reset()

    def reset(self) -> None:
        self.step_time, self.wait_time, self.steps = 0.0, 0.0, 0

    def batch_arrived(self) -> None:
        self.got = time.perf_counter()

    def step_done(self) -> None:
        done = time.perf_counter()
        self.step_time += done - self.got
        self.wait_time += self.got - self.ready
        self.steps += 1
        self.ready = done

    def record(self) -> dict:
        return {"dur": self.step_time / max(self.steps, 1), "data_load_dur": self.wait_time / max(self.steps, 1)}


def train_epoch(run: Run) -> None:
    """The steps of one epoch (from the resumed step on the first), then its row, line and checkpoint."""
    at, epoch_start, epoch_first_step = run.at, time.monotonic(), run.at.global_step
    set_train_mode(run.core, run.cfg.trainable, run.cfg.frozen_bn)
    run.data.train_loader.sampler.set_epoch(at.epoch, at.step)
    timer = StepTimer()
    for images, target in map(run.data.unread.take, run.data.train_loader):
        if at.step >= run.data.steps_per_epoch:
            break
        timer.batch_arrived()
        train_step(run, images, target)
        at.global_step += 1
        at.step += 1
        timer.step_done()
        run.bar.update(1)
        after_step(run, timer)
    end_epoch(run, epoch_start, epoch_first_step)


def train_step(run: Run, images: torch.Tensor, target: torch.Tensor) -> None:
    """One optimiser step on a batch (none when every image of it was unreadable, or with ``--on_nonfinite
    skip`` when the loss or a gradient is not finite); the schedule advances either way."""
    cfg, optimizer, scaler = run.cfg, run.optimizer, run.scaler
    if len(target) == 0:  # --on_bad_image skip dropped every image of this batch: no update
        run.data.unread.check_empty_batch_allowed(run.dinfo.enabled)
        run.scheduler.step()
        return
    images = images.to(run.device, non_blocking=True)
    target = target.to(run.device, non_blocking=True)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    soft = None
    if run.mixer is not None:
        images, soft = run.mixer(images, target)
    with autocast(run.device, cfg.amp):
        output = run.forward(images)
        logits = logits_of(output)
        head_loss = getattr(run.core, "head_loss", None)
        if head_loss is not None:
            loss = head_loss(output, soft if soft is not None else target)
        else:
            loss = run.criterion(logits, soft if soft is not None else target)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if run.clip_params:
        scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
        if cfg.clip_grad_value is not None:
            torch.nn.utils.clip_grad_value_(run.clip_params, cfg.clip_grad_value)
        if cfg.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(run.clip_params, cfg.clip_grad_norm)
    applied = run.guard.step_ok(loss, run.at.global_step, run.at.epoch, run.at.step, run.scheduler.get_last_lr()[0])
    if applied:
        scaler.step(optimizer)
        scaler.update()
    else:  # --on_nonfinite skip: this step's update is dropped, as a grad scaler would
        optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    if applied:
        add_metrics(run, output, logits, loss, target)


def add_metrics(run: Run, output, logits: torch.Tensor, loss: torch.Tensor, target: torch.Tensor) -> None:
    """The step's loss and top-1/top-5 hits (and superclass hits, for a model that reports them), on the device."""
    c1, c5 = topk_correct(logits.detach().float(), target)
    sc = None
    parent_targets = getattr(run.core, "parent_targets", None)
    if parent_targets is not None and isinstance(output, dict) and "parent_logits" in output:
        sc = output["parent_logits"].detach().argmax(1).eq(parent_targets(target)).sum()
    run.train_meters.add(loss, c1, c5, len(target), sc)
    run.epoch_meters.add(loss, c1, c5, len(target), sc)


def after_step(run: Run, timer: StepTimer) -> None:
    """What is due after a step: a train record, a validation, a time-based ``last.pt``; a stop request."""
    cfg, at, steps = run.cfg, run.at, run.data.steps_per_epoch
    epoch_float = at.epoch + at.step / steps
    if at.global_step % cfg.log_every == 0 or at.step == steps:
        log_train(run, timer, epoch_float)
    if at.global_step % max(1, round(cfg.val_every * steps)) == 0 or at.global_step == run.total_steps:
        validate_and_log(run, epoch_float)
    save_due = cfg.save_every_minutes <= 0 or time.monotonic() - run.last_save >= cfg.save_every_minutes * 60
    if at.step < steps and save_due:
        save_last(run)
    if stop_requested(run):
        raise stop_now(run)


def stop_now(run: Run) -> TrainingInterrupted:
    """Save ``last.pt`` at the last finished step and say how to resume (the caller raises it)."""
    at = run.at
    save_last(run)
    return TrainingInterrupted(
        f"stopped by {run.stop.name} at epoch {at.epoch + 1}, step {at.step} (global step {at.global_step}); "
        f"saved {run.paths.last}; resume with: ventralkit train --resume {run.paths.last} (or rerun the same "
        "command with --resume auto)", run.stop.signum or 15)


def log_train(run: Run, timer: StepTimer, epoch_float: float) -> None:
    """A train record: the meters since the last one, the learning rate and the step timings."""
    run.guard.raise_if_diverged()
    rec = {**run.train_meters.read(), "learning_rate": run.scheduler.get_last_lr()[0], **timer.record()}
    if run.guard.skipped:
        rec["skipped_steps"] = run.guard.skipped
    run.records.log("train", epoch_float, run.at.global_step, rec)
    run.bar.set_postfix(loss=f"{rec['loss']:.3f}", top1=f"{rec['top1']:.3f}")
    run.train_meters.reset()
    timer.reset()


def validate_and_log(run: Run, epoch_float: float) -> None:
    """A validation record; ``best.pt`` when the top-1 is the best so far."""
    res, val_dur = validate(run)
    run.last_val, run.last_val_step = {**res.record(), "dur": val_dur}, run.at.global_step
    run.records.log("val", epoch_float, run.at.global_step, run.last_val)
    if res.top1 > run.at.best_top1:
        run.at.best_top1 = res.top1
        save_checkpoint(run, run.paths.best, run.at.epoch, run.at.step, weights_only=True)
    set_train_mode(run.core, run.cfg.trainable, run.cfg.frozen_bn)


def validate(run: Run) -> tuple[EvalResult, float]:
    """The validation set's loss and accuracy (all ranks' shards combined), and the seconds per batch."""
    run.guard.raise_if_diverged()
    t0, loader, n_cls = time.perf_counter(), run.data.val_loader, run.data.num_classes
    if run.dinfo.enabled:  # every rank evaluates with rank 0's BatchNorm statistics: those that are saved
        dist.broadcast_buffers(run.core)
    if len(loader) > 0:
        res = evaluate(run.val_forward, loader, device=run.device, amp=run.cfg.amp, desc="val",
                       progress=run.cfg.progress, num_classes=n_cls, channels_last=run.cfg.channels_last)
        run.data.unread.add(res.skipped)
    else:  # a rank whose validation shard is empty (fewer images than ranks)
        res = EvalResult(0.0, 0.0, 0.0, 0, np.zeros(n_cls), np.zeros((n_cls, n_cls)), np.zeros(0, dtype=np.int64), None)
    if run.dinfo.enabled:  # combine the ranks' shards: sums of per-image quantities, then divide
        t = torch.tensor([res.loss * res.n, res.top1 * res.n, res.top5 * res.n, (res.super_top1 or 0.0) * res.n,
                          res.n], dtype=torch.float64, device=run.device)
        dist.all_reduce_sum(t)
        n = max(t[4].item(), 1.0)
        res.loss, res.top1, res.top5, res.n = t[0].item() / n, t[1].item() / n, t[2].item() / n, int(t[4].item())
        res.super_top1 = t[3].item() / n if getattr(run.core, "parent_targets", None) is not None else None
    return res, (time.perf_counter() - t0) / max(len(loader), 1)


def stop_requested(run: Run) -> bool:
    """A stop signal arrived. Under DDP the ranks agree at log steps (one small all-reduce), so all stop at
    the same step."""
    if not run.dinfo.enabled:
        return run.stop.requested
    if run.at.global_step % run.cfg.log_every:
        return False
    flag = torch.tensor([float(run.stop.requested)], device=run.device)
    return dist.all_reduce_sum(flag).item() > 0


def end_epoch(run: Run, epoch_start: float, epoch_first_step: int) -> None:
    """The epoch's row in metrics.csv and its line; ``last.pt`` at the epoch's end and its snapshot."""
    epoch, cfg = run.at.epoch, run.cfg
    ep = run.epoch_meters.read()
    run.epoch_meters.reset()
    if run.is_main:
        last_val = run.last_val
        run.records.epoch_row({"epoch": epoch + 1, "train_loss": ep["loss"], "train_top1": ep["top1"],
                               "train_top5": ep["top5"],
                               **({f"val_{k}": v for k, v in last_val.items() if k != "dur"} if last_val else {}),
                               "learning_rate": run.scheduler.get_last_lr()[0],
                               "epoch_seconds": round(time.monotonic() - epoch_start, 3)})
        fresh_val = last_val if run.last_val_step > epoch_first_step else None  # validated in this epoch
        say(epoch_line(epoch + 1, cfg.epochs, ep, fresh_val, time.monotonic() - epoch_start))
    run.at.epoch, run.at.step = epoch + 1, 0
    save_checkpoint(run, run.paths.last, epoch + 1, 0, finished=epoch + 1 == cfg.epochs,
                    meters=[run.train_meters.state(), [0.0] * 6])
    run.last_save = time.monotonic()
    if cfg.keep_epochs != 0 and run.is_main:  # the same bytes as last.pt: a hard link, not a copy
        link_or_copy(run.paths.last, run.paths.epoch(epoch + 1))
        prune_epoch_snapshots(run.paths.checkpoints, cfg.keep_epochs)


def epoch_line(epoch: int, epochs: int, train: dict, val: dict | None, seconds: float) -> str:
    """One line per finished epoch on stdout, so a run with ``--no_progress`` (or a log file) shows how it goes."""
    line = f"epoch {epoch}/{epochs}: train loss {train['loss']:.4f} top-1 {train['top1']:.4f}"
    if val:
        line += f", val loss {val['loss']:.4f} top-1 {val['top1']:.4f}"
    return f"{line}, {seconds:.1f} s"


# ---- checkpoints ---------------------------------------------------------------------------------------
def save_last(run: Run) -> None:
    """``last.pt`` in the middle of an epoch, with the meters so far (a resume goes on with them)."""
    save_checkpoint(run, run.paths.last, run.at.epoch, run.at.step,
                    meters=[run.train_meters.state(), run.epoch_meters.state()])
    run.last_save = time.monotonic()


def save_checkpoint(run: Run, path: Path, epoch: int, step_in_epoch: int, finished: bool = False, meters=None,
                    weights_only: bool = False) -> None:
    """``last.pt`` holds everything to resume; ``best.pt`` the weights and what describes them."""
    run.guard.raise_if_diverged()  # never save non-finite weights (a host read, at save time only)
    if not run.is_main:
        run.data.unread.save()  # this rank's own list
        return
    cfg, at = run.cfg, run.at
    state = {
        "format": CHECKPOINT_FORMAT, "model_name": cfg.model, "num_classes": run.data.num_classes,
        "classes": run.data.classes, "config": cfg.to_dict(), "model": run.core.state_dict(), "epoch": epoch,
        "step_in_epoch": step_in_epoch, "global_step": at.global_step, "best_top1": at.best_top1,
        "finished": finished, "ventralkit_version": __version__, "preprocessing": run.data.pre.to_dict(),
    }
    if not weights_only:
        state.update({"optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                      "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None, "rng": rng_state(),
                      "meters": meters, "skipped_steps": run.guard.skipped})
    write_checkpoint(state, path)
    run.folder.commit()  # there is something to resume from: the folder keeps what the run wrote
    run.data.unread.save()


# ---- the end ------------------------------------------------------------------------------------------
def finish(run: Run, trained: bool) -> TrainResult:
    """The summary line (a resumed finished run trained nothing: only where its folder is)."""
    unread, guard, last_val = run.data.unread, run.guard, run.last_val
    if run.is_main and trained:
        summary = f"done: {plural(run.cfg.epochs, 'epoch')}, best val top-1 {max(run.at.best_top1, 0):.4f}"
        if guard.skipped:
            summary += f", {guard.skipped} non-finite steps skipped"
        if len(unread):
            summary += (f", {len(unread)} unreadable image{'s' if len(unread) != 1 else ''} left out "
                        f"(listed in {unread.path})")
        if last_val:
            summary += f", last val top-1 {last_val['top1']:.4f} top-5 {last_val['top5']:.4f} loss {last_val['loss']:.4f}"
        print(summary)
    if run.is_main:
        print(f"run folder: {run.paths.root}")
    return TrainResult(run.paths.root, run.at.best_top1, last_val, run.cfg.epochs, run.core,
                       trained=[run.paths.root] if trained and run.is_main else [])
