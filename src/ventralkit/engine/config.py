"""One typed training config, validated once, printed at start and saved as ``config.json``.

Values come, in increasing priority, from the defaults below (CORnet ``run.py``'s, docs/reference/cornet.md
section 3.2), a named recipe or TOML file, and explicit flags / keyword arguments. A recipe may add
``[[stage]]`` tables: stages run in order, each starting from the previous stage's final weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..errors import ConfigError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"
#: the smallest input that every registered model can take; smaller sizes are refused up front
MIN_IMAGE_SIZE = 16
#: options that belong to one run folder, never copied when a run is repeated with --config
RUN_SPECIFIC = frozenset({"output_path", "resume", "overwrite", "stage"})
#: permissions for one command, given only as its flags: a file (recipe, TOML or JSON config, a checkpoint's stored
#: config) that could set them would let that file decide whether another file may run code when loaded
PER_COMMAND = frozenset({"trust_checkpoint"})
#: printed at the start of every run even at their default values: what is trained, on what, and where
DESCRIBE_ALWAYS = ("model", "dataset", "output_path")


#: mixed-precision modes (``--amp`` of every command that takes it: ``cli/common.py`` offers these)
AMP_MODES = ("none", "bf16", "fp16")
#: the sections of ``ventralkit train --help`` the options generated from the fields below fall in
RUN, OPTIMISATION, SPEED = "run", "optimisation", "speed and bookkeeping"


def option(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, flags: tuple | None = None,
           help: str | None = None, choices: tuple | None = None, group: str = SPEED, metavar: str | None = None,
           item_type: type | None = None, negative: tuple = (), negative_help: str | None = None,
           shared: str | None = None):
    """A ``TrainConfig`` field and, in its metadata, how the ``train`` command offers it, so that an option
    is declared in one place (``cli/train.py`` generates its options from these).

    ``flags``: the option strings (default ``--<name>``); ``()``: no option of its own (set by a recipe or
    a config file, or through other flags). ``choices``: the allowed values, also what ``validate`` checks.
    ``item_type``: the element type of a list option (given as ``--milestones 10 20``). ``negative``: option
    strings that set the field to False (``--no_progress``). ``shared``: declared with this argparse
    ``dest`` by ``cli/common.py``, for the options several commands share (``--model``, ``--workers``...);
    their help and default live there. The value type comes from the field's annotation."""
    meta = {"flags": flags, "help": help, "choices": choices, "group": group, "metavar": metavar,
            "item_type": item_type, "negative": negative, "negative_help": negative_help, "shared": shared}
    return field(default=default, default_factory=factory, metadata=meta)


@dataclass
class TrainConfig:
    # model
    model: str = option("cornet_z", shared="model")
    model_kwargs: dict = option(factory=dict, flags=())  # --model_kwargs JSON and --times/--outer_times/--feedback
    num_classes: int | None = option(None, shared="num_classes")  # None: the number of classes in the dataset
    checkpoint: str | None = option(None, shared="ckpt_path")  # initial weights (fine-tuning)
    pretrained: bool = option(False, shared="pretrained", group=OPTIMISATION, negative=("--no-pretrained", "--no_pretrained"),
                              negative_help="start from random weights although the recipe loads published ones")
    weights: str | None = option(None, shared="weights")  # a torchvision/timm model's weights (None: random init)
    reset_classifier: bool = option(False, group=OPTIMISATION,  # after loading weights, a fresh classifier
                                    help="after loading --ckpt_path, a fresh classifier of --num_classes")
    trainable: list = option(factory=list, group=OPTIMISATION, item_type=str,  # module-name prefixes; empty = all
                             help="train only these modules (e.g. fc)")
    frozen_bn: str = option("eval", group=OPTIMISATION, choices=("eval", "train"),
                            help="with --trainable: frozen BatchNorms keep their statistics (eval, default) or update "
                                 "them as main.py's fine-tuning does (train)")
    trust_checkpoint: bool = option(False, shared="trust_checkpoint")  # weight files that need full unpickling
    # data
    dataset: str = option("folder", shared="dataset",
                          choices=("folder", "digits", "digits-occluded", "cifar100"))  # or digits-occluded:<level>
    data_path: str | None = option(None, shared="data_path")
    val_split: str = option("val", flags=())
    image_size: int | None = option(None, shared="image_size")  # None: the model's input size
    on_bad_image: str = option("skip", choices=("skip", "error"))
    augment: str = option("crop_flip", group=OPTIMISATION, choices=("crop_flip", "flip", "none"),
                          help="training augmentation of image folders: RandomResizedCrop + flip (default), flip only "
                               "at native size, or none")
    eval_transform: str = option("resize_crop", group=OPTIMISATION, choices=("resize_crop", "none"),
                                 help="validation preprocessing: Resize + CenterCrop (default) or the images as they are")
    workers: int | None = option(None, shared="workers")  # None: one per CPU core, at most 8
    data_backend: str = option("cpu", choices=("cpu", "gpu"),
                               help="image folders: decode JPEGs and crop/flip in CPU workers (cpu, default) or on the "
                                    "training device (gpu; workers only read the files)")
    batch_size: int = option(256, shared="batch_size")
    # optimisation
    epochs: int = option(20, group=OPTIMISATION)
    optimizer: str = option("sgd", group=OPTIMISATION, choices=("sgd", "adam", "adamw"))
    lr: float = option(0.1, group=OPTIMISATION, flags=("--lr", "--learning_rate"))
    momentum: float = option(0.9, group=OPTIMISATION)
    weight_decay: float = option(1e-4, group=OPTIMISATION)
    nesterov: bool = option(False, flags=())
    scheduler: str = option("step", group=OPTIMISATION, choices=("step", "multistep", "cosine", "onecycle", "constant"))
    step_size: float = option(10, group=OPTIMISATION, help="epochs between x0.1 decays (StepLR)")
    gamma: float = option(0.1, group=OPTIMISATION)
    milestones: list = option(factory=list, group=OPTIMISATION, item_type=float, help="MultiStepLR epochs")
    warmup_epochs: float = option(0.0, group=OPTIMISATION)
    pct_start: float = option(0.3, group=OPTIMISATION, help="onecycle: fraction of steps warming up (0.3)")
    clip_grad_value: float | None = option(None, group=OPTIMISATION, help="clamp gradients to [-v, v]")
    clip_grad_norm: float | None = option(None, group=OPTIMISATION, help="clip the gradients' total L2 norm")
    label_smoothing: float = option(0.0, group=OPTIMISATION)
    mixup_alpha: float = option(0.0, group=OPTIMISATION)
    cutmix_alpha: float = option(0.0, group=OPTIMISATION)
    on_nonfinite: str = option("stop", group=OPTIMISATION, choices=("stop", "skip"),
                               help="a non-finite loss or gradient: stop the run (default, exit code 3) or drop that step")
    sync_bn: bool = option(False, help="under torchrun on GPUs: BatchNorm statistics over all processes (small "
                                       "per-GPU batches)")
    # speed
    amp: str = option("none", shared="amp", choices=AMP_MODES)
    channels_last: bool = option(False)
    compile: bool = option(False)
    device: str = option("auto", shared="device")
    # bookkeeping
    output_path: str | None = option(None, group=RUN, flags=("-o", "--output_path"),
                                     help="run folder (default runs/<model>-<time>)")
    seed: int = option(0)
    log_every: int = option(50, help="steps between train records")
    val_every: float = option(1.0, help="epochs between validations (0.5 = twice)")
    save_every_minutes: float = option(10.0)  # 0: after every step
    keep_epochs: int = option(3, help="epoch snapshots kept (-1 all, 0 none)")
    max_steps_per_epoch: int | None = option(None)
    resume: str | None = option(None, group=RUN, flags=("--resume", "--restore_path"), metavar="LAST_PT|auto",
                                help="continue an interrupted run from its checkpoints/last.pt; 'auto': from -o's "
                                     "last.pt when there is one, else start (a requeued job reruns the same command)")
    overwrite: bool = option(False, group=RUN,
                             help="replace the run already in --output_path (default: refuse to mix two runs)")
    tensorboard: bool = option(False)
    progress: bool = option(True, flags=(), negative=("--no_progress",), negative_help="no progress bars")
    recipe: str | None = option(None, group=RUN,
                                help="named recipe (see `ventralkit train --list_recipes`) or a .toml file")
    stages: list = option(factory=list, flags=())
    stage: str | None = option(None, flags=())  # name of the stage this config runs (set by the stage runner)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        unknown = sorted(set(values) - cls.field_names())
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], cls.field_names(), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{source}: unknown option {unknown[0]!r}{hint}")
        return cls(**values)

    @classmethod
    def build(cls, recipe: str | None = None, config_file: str | None = None, **overrides) -> "TrainConfig":
        """Defaults < dataset < recipe < config file < overrides (``None`` overrides are ignored).

        A built-in dataset brings its own defaults (``data.defaults``), chosen by whichever layer names
        the dataset. Overrides win inside ``[[stage]]`` tables too: ``--epochs 1`` on a staged recipe
        runs every stage for one epoch, although the stages set their own ``epochs``. ``sources`` on the
        result says where each value that is not a default came from.
        """
        from ..data.defaults import DATASET_DEFAULTS

        layers: list[tuple[str, dict]] = []
        if recipe:
            layers.append(("recipe", {**load_toml(recipe_path(recipe)), "recipe": recipe}))
        if config_file:
            layers.append(("config", load_config_file(config_file)))
        given = {k: v for k, v in overrides.items() if v is not None}
        layers.append(("flag", given))
        dataset = next((lv["dataset"] for _, lv in reversed(layers) if "dataset" in lv), cls.dataset)
        layers.insert(0, ("dataset", dict(DATASET_DEFAULTS.get(str(dataset).partition(":")[0], {}))))
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for source, layer in layers:
            values.update(layer)
            sources.update(dict.fromkeys(layer, source))
        if values.get("stages") and "stages" not in given:
            values["stages"] = [{**st, **{k: v for k, v in given.items() if k in st}} if isinstance(st, dict) else st
                                for st in values["stages"]]
        cfg = cls.from_dict(values, source=config_file or recipe or "options")
        cfg.sources = sources
        return cfg

    def replace(self, **changes) -> "TrainConfig":
        new = dataclasses.replace(self, **changes)
        new.sources = {**self.sources, **dict.fromkeys(changes, "set")}
        return new

    @property
    def sources(self) -> dict[str, str]:
        """Where each non-default value came from: dataset | recipe | config | flag | set (by the program)."""
        return self.__dict__.get("_sources", {})

    @sources.setter
    def sources(self, value: dict[str, str]) -> None:
        self.__dict__["_sources"] = dict(value)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # ---- validation -----------------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Refuse, in one line naming the flag, a value the run cannot use; ``train`` calls this once, before
        any work (each ``[[stage]]``'s own config once more, as the stage runner builds it)."""
        self._check_numbers()
        self._check_choices()
        self._check_data_options()
        self._check_training_options()
        self._check_stages()
        return self

    @staticmethod
    def _bad(flag: str, why: str):
        raise ConfigError(f"--{flag} {why}")

    def _check_numbers(self) -> None:
        """Counts, sizes and rates in their ranges (nan and inf first: they pass every ``<= 0`` test)."""
        bad = self._bad
        not_finite = self.non_finite_option()
        if not_finite:  # nan passes every "<= 0" test below, then poisons the run (a NaN lr diverges at step 1)
            bad(not_finite, f"must be a finite number, got {getattr(self, not_finite)}")
        if self.batch_size is None or self.batch_size <= 0:
            bad("batch_size", f"must be a positive integer, got {self.batch_size}")
        if self.epochs <= 0:
            bad("epochs", f"must be a positive integer, got {self.epochs}")
        if self.workers is not None and self.workers < 0:
            bad("workers", f"must be >= 0, got {self.workers}")
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIZE:
            bad("imsize", f"(image_size) must be at least {MIN_IMAGE_SIZE} pixels, got {self.image_size}")
        if self.keep_epochs < -1:
            bad("keep_epochs", f"must be -1 (all), 0 (none) or a positive count, got {self.keep_epochs}")
        if self.save_every_minutes < 0:
            bad("save_every_minutes", f"must be >= 0, got {self.save_every_minutes}")
        if self.lr <= 0:
            bad("lr", f"must be positive, got {self.lr}")
        for name in ("momentum", "weight_decay", "warmup_epochs"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        if self.gamma <= 0:
            bad("gamma", f"must be positive (the factor of each learning-rate decay), got {self.gamma}")
        if self.num_classes is not None and self.num_classes <= 0:
            bad("num_classes", f"must be positive, got {self.num_classes}")

    def _check_choices(self) -> None:
        """Every option with a fixed set of values (the fields' ``choices``, which the command line offers too)."""
        for f in fields(self):
            allowed = f.metadata.get("choices")
            value = getattr(self, f.name)
            if f.name == "dataset" and str(value).startswith("digits-occluded:"):  # the suffix is the difficulty
                from ..data.embedded import occlusion_level

                occlusion_level(value)  # a one-line error for a bad level
                allowed = (*allowed, value)
            if allowed and value not in allowed:
                self._bad(f.name, f"must be one of {', '.join(allowed)}, got {value!r}")

    def _check_data_options(self) -> None:
        """Options that only some datasets take, and the data a dataset needs."""
        bad = self._bad
        if self.dataset != "folder" and (self.augment != "crop_flip" or self.eval_transform != "resize_crop"):
            flag = "augment" if self.augment != "crop_flip" else "eval_transform"
            bad(flag, f"applies to image folders (--dataset folder); {self.dataset} has its own transforms")
        if self.data_backend == "gpu" and (self.dataset != "folder" or self.augment != "crop_flip"):
            bad("data_backend", "gpu applies to image folders (--dataset folder) with --augment crop_flip; use cpu")
        if self.dataset in ("folder", "cifar100") and not self.data_path:
            bad("data_path", f"is required for --dataset {self.dataset} (or use --dataset digits, the embedded set)")

    def _check_training_options(self) -> None:
        """The schedule, clipping, logging and regularisation options, and the weights to start from."""
        bad = self._bad
        if self.scheduler == "step" and self.step_size <= 0:
            bad("step_size", f"must be positive, got {self.step_size}")
        if self.scheduler == "multistep":  # epochs at which the rate decays: a milestone <= 0 decays before epoch 1
            if not self.milestones:
                bad("milestones", "is required with --scheduler multistep (the epochs to decay at, e.g. 30 60)")
            if any(not m > 0 for m in self.milestones):  # not m > 0 also refuses nan
                bad("milestones", f"must be positive epochs, got {' '.join(str(m) for m in self.milestones)}")
        if self.scheduler == "onecycle" and not 0 < self.pct_start < 1:
            bad("pct_start", f"must be in (0, 1), got {self.pct_start}")
        if self.scheduler == "onecycle" and self.warmup_epochs:
            bad("warmup_epochs", "does not apply to --scheduler onecycle (its warm-up is --pct_start)")
        for name in ("clip_grad_value", "clip_grad_norm"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                bad(name, f"must be positive, got {v}")
        if self.log_every <= 0:
            bad("log_every", "must be positive")
        if self.val_every <= 0:
            bad("val_every", "must be positive")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            bad("mixup_alpha", "and --cutmix_alpha must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            bad("label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        if self.pretrained and self.checkpoint:
            bad("pretrained", "and --checkpoint are exclusive: give one")
        if self.weights is not None and (self.checkpoint or self.pretrained):
            bad("weights", f"and --{'checkpoint' if self.checkpoint else 'pretrained'} are exclusive: give one")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch <= 0:
            bad("max_steps_per_epoch", "must be positive")

    def _check_stages(self) -> None:
        for i, st in enumerate(self.stages):
            if not isinstance(st, dict) or not st.get("name"):
                raise ConfigError(f"stage {i + 1} of {self.recipe or 'the config'} needs a name")
            extra = set(st) - self.field_names() - {"name"}
            if extra:
                raise ConfigError(f"stage {st['name']!r}: unknown option {sorted(extra)[0]!r}")

    def non_finite_option(self) -> str | None:
        """The first option holding nan or inf (flags and TOML files can both spell them), or None."""
        for f in fields(self):
            value = getattr(self, f.name)
            if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
                return f.name
        return None

    def describe(self, full: bool = False) -> str:
        """The resolved config as aligned ``key = value  (source)`` lines (printed at the start of a run).

        Only what differs from the defaults, and the essentials (``DESCRIBE_ALWAYS``), unless ``full``: sixty
        lines on every run hide the few that matter. The last line says where every option is kept."""
        d = self.to_dict()
        defaults = TrainConfig().to_dict()
        shown = {k: v for k, v in d.items() if full or k in DESCRIBE_ALWAYS or v != defaults[k]}
        width = max(map(len, shown))
        vwidth = min(max(len(json.dumps(v)) for v in shown.values()), 40)
        src = {k: self.sources.get(k) or ("default" if v == defaults[k] else "given") for k, v in shown.items()}
        lines = [f"  {k.ljust(width)} = {json.dumps(v).ljust(vwidth)}  ({src[k]})" for k, v in shown.items()]
        hidden = len(d) - len(shown)
        if hidden:
            where = Path(self.output_path) / "config.json" if self.output_path else "the run's config.json"
            lines.append(f"  ({hidden} other options at their defaults; every option is in {where})")
        return "\n".join(lines)


def recipe_path(name: str) -> Path:
    """A recipe by name (``recipes/<name>.toml``, shipped with the package) or by path."""
    path = Path(name)
    if path.suffix == ".toml" and path.is_file():
        return path
    candidate = RECIPE_DIR / f"{name}.toml"
    if candidate.is_file():
        return candidate
    known = ", ".join(list_recipes()) or "none"
    raise ConfigError(f"--recipe {name}: no such recipe (known: {known}) and no such .toml file")


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


#: the work each recipe family reproduces (sources in docs/reference/)
RECIPE_PAPERS = {
    "cornet-s100": "CORnet-100, CORnet-S with V4->V1 feedback (chanelfcheng/CORnet-100)",
    "cornet": "Kubilius et al. 2018/2019, CORnet (dicarlolab/CORnet)",
    "v1": "Pogoncheff et al. 2023, V1-constrained ResNet50s (gpogoncheff/explaining_v1)",
    "cifar100": "the CIFAR-100 factorized/hierarchical heads study (PhiNet, ResNet-9)",
    "demo": "ventralkit's quick start",
}


def recipe_table() -> str:
    """One line per recipe: name, model, dataset, what it reproduces, and its own first comment line."""
    lines = []
    for name in list_recipes():
        path = RECIPE_DIR / f"{name}.toml"
        values = load_toml(path)
        head = []
        for ln in path.read_text().splitlines():  # the leading comment's first clause
            if not ln.startswith("#"):
                break
            head.append(ln[1:].strip())
        first = re.split(r" \(|: ", " ".join(head), maxsplit=1)[0].strip()
        paper = next((v for k, v in RECIPE_PAPERS.items() if name.startswith(k)), "")
        lines.append(f"{name}\n    model {values.get('model', '?')}, dataset {values.get('dataset', 'folder')}"
                     f"{'; ' + str(len(values['stages'])) + ' stages' if values.get('stages') else ''}"
                     f"{', pretrained weights (--no-pretrained to start from random)' if values.get('pretrained') else ''}"
                     f"\n    reproduces: {paper}\n    {first}")
    return "\n".join(lines)


def load_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    allowed = sorted(PER_COMMAND & set(data))
    if allowed:
        raise ConfigError(f"{path}: {allowed[0]} is a permission for one command, not a setting; remove it from the "
                          f"file and pass --{allowed[0]} to the command that needs it")
    if "stage" in data:
        data["stages"] = data.pop("stage")
    return data


def load_config_file(path: str) -> dict:
    """A ``config.json`` from an earlier run folder, or a TOML file with the same keys."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise ConfigError(f"--config {path}: no such file")
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"--config {p}: not valid JSON ({err.msg})") from None
        data = data.get("config", data)
        # a repeated run writes a new folder: where and what the old run resumed/overwrote is not carried over
        return {k: v for k, v in data.items() if k in TrainConfig.field_names() - RUN_SPECIFIC - PER_COMMAND}
    return load_toml(p)
