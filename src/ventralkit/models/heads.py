"""Classifier heads for any registered backbone: linear, low-rank ("adaptive"), non-negative, hierarchical.

The heads of the CIFAR-100 head study (docs/reference/heads.md section 2, summarised in section 9). Each
head maps the backbone's pooled embedding ``e`` (``backbone.forward_head(x, pre_logits=True)``)
to class scores; ``attach_head`` puts one on any registered backbone and returns a model with the
uniform interface.

- ``linear``: ``W e + b`` (the original head; optional ReLU on ``e`` and dropout before it).
- ``adaptive``: ``B · dropout(A e + a) + b`` with ``A`` of shape rank x n: a rank-limited linear
  map, no non-linearity between the factors.
- ``nmf`` / ``nmf_sigmoid``: ``relu(e)`` through two factor matrices kept non-negative by a
  re-parametrisation (effective weight ``relu(raw)`` or ``sigmoid(raw)``; biases free).
- ``hierarchical``: a parent (superclass) classifier plus per-parent child classifiers and an
  optional shared fine classifier, with the parent-to-child mapping read from a JSON file.

Fixes relative to the study's code (docs/reference/heads.md section 7): the hierarchical loss uses one
log-softmax per level (no cross-entropy on softmax outputs), the child weights are registered
parameters (so they are saved), children are trained on the true parent (teacher forcing) and
every parent is decoded with its own child classifier.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError

#: shipped parent -> child mappings (``data/mappings/<name>.json``)
MAPPINGS_DIR = Path(__file__).resolve().parents[1] / "data" / "mappings"

#: keyword arguments of the builders that belong to the backbone, not the head
BACKBONE_OPTIONS = ("backbone_checkpoint", "backbone_pretrained")


# ----------------------------------------------------------------------------------------------
# flat heads


class LinearHead(nn.Module):
    """The original classifier: ``fc(dropout(relu?(e)))``.

    ``input_relu`` and ``dropout`` give the study's variants (``original_prerelu``: ReLU first;
    the 20-superclass head: ReLU, Dropout(0.3)).
    """

    def __init__(self, in_features: int, num_classes: int, input_relu: bool = False, dropout: float = 0.0):
        super().__init__()
        self.input_relu = bool(input_relu)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        if self.input_relu:
            e = F.relu(e)
        return self.fc(self.dropout(e))


class AdaptiveHead(nn.Module):
    """Low-rank factorised classifier: ``expand(dropout(reduce(e)))``, ``reduce``: n -> rank.

    Without ``hidden_activation`` the head is the linear map ``W = B A`` of rank <= ``rank``
    (``low_rank_map`` returns it), with 445*rank + 100 parameters for n = 344, K = 100
    (docs/reference/heads.md 2.1). ``hidden_activation="relu"`` is the study's ResNet variant (docs/reference/heads.md 2.3, step 2),
    which is no longer linear; ``input_relu`` is its ``adaptiverelu`` variant.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        rank: int = 50,
        dropout: float = 0.5,
        input_relu: bool = False,
        hidden_activation: str | None = None,
    ):
        super().__init__()
        if int(rank) < 1:
            raise ConfigError(f"adaptive head: rank must be >= 1, got {rank} (rank 0 is head='linear')")
        if hidden_activation not in (None, "none", "relu"):
            raise ConfigError(f"adaptive head: hidden_activation must be None or 'relu', got {hidden_activation!r}")
        self.rank = int(rank)
        self.input_relu = bool(input_relu)
        self.hidden_relu = hidden_activation == "relu"
        self.reduce = nn.Linear(in_features, self.rank)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.expand = nn.Linear(self.rank, num_classes)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        if self.input_relu:
            e = F.relu(e)
        h = self.reduce(e)
        if self.hidden_relu:
            h = F.relu(h)
        return self.expand(self.dropout(h))

    @torch.no_grad()
    def low_rank_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)`` with ``head(e) == W e + b`` in eval mode: ``W = B A``, ``b = B a + b_B``."""
        if self.hidden_relu:
            raise ConfigError("adaptive head with hidden_activation='relu' is not a linear map")
        w = self.expand.weight @ self.reduce.weight
        b = self.expand.weight @ self.reduce.bias + self.expand.bias
        return w, b


class PositiveLinear(nn.Module):
    """A linear layer whose effective weight is ``relu(raw_weight)`` (or ``sigmoid``), so never negative.

    The study's ``PositiveLinear``/``PositiveLinearSig`` (docs/reference/heads.md 2.1): Xavier-uniform init of the raw
    matrix, bias uniform in +-1/sqrt(in) and unconstrained. With ``relu`` an entry pushed below
    zero has zero gradient and stays at 0 ("dead"), as in the original.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, weight_fn: str = "relu"):
        super().__init__()
        if weight_fn not in ("relu", "sigmoid"):
            raise ConfigError(f"nmf head: weight_fn must be 'relu' or 'sigmoid', got {weight_fn!r}")
        self.in_features, self.out_features, self.weight_fn = in_features, out_features, weight_fn
        self.raw_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        nn.init.xavier_uniform_(self.raw_weight)
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight(self) -> torch.Tensor:
        return F.relu(self.raw_weight) if self.weight_fn == "relu" else torch.sigmoid(self.raw_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, weight={self.weight_fn}(raw_weight)"


class NMFHead(nn.Module):
    """"NMF adaptive" head: ``expand(dropout(reduce(relu(e))))`` with non-negative factor weights.

    ``rank=0`` is the study's ``nnmf_base`` (one non-negative layer n -> K). ``nmf_sigmoid`` is
    ``weight_fn="sigmoid"`` with dropout 0.5 between the factors (``nnmf_sig``).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        rank: int = 50,
        weight_fn: str = "relu",
        dropout: float = 0.0,
        input_relu: bool = True,
    ):
        super().__init__()
        if int(rank) < 0:
            raise ConfigError(f"nmf head: rank must be >= 0, got {rank}")
        self.rank = int(rank)
        self.input_relu = bool(input_relu)
        self.reduce = PositiveLinear(in_features, self.rank, weight_fn=weight_fn) if self.rank else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.expand = PositiveLinear(self.rank or in_features, num_classes, weight_fn=weight_fn)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        if self.input_relu:
            e = F.relu(e)
        if self.reduce is not None:
            e = self.dropout(self.reduce(e))
        return self.expand(e)


def _nmf_sigmoid(in_features: int, num_classes: int, rank: int = 50, dropout: float = 0.5, **kw) -> NMFHead:
    return NMFHead(in_features, num_classes, rank=rank, weight_fn="sigmoid", dropout=dropout, **kw)


# ----------------------------------------------------------------------------------------------
# parent -> child mappings


@dataclass(frozen=True)
class Hierarchy:
    """A two-level label tree: ``children[p]`` lists parent ``p``'s fine classes in child order."""

    name: str
    children: tuple[tuple[int, ...], ...]
    num_classes: int
    parent_names: tuple[str, ...] = ()

    @property
    def num_parents(self) -> int:
        return len(self.children)

    @property
    def max_children(self) -> int:
        return max(len(c) for c in self.children)

    def parent_of(self) -> list[int]:
        """The parent of every fine class, indexed by fine class."""
        out = [0] * self.num_classes
        for p, kids in enumerate(self.children):
            for f in kids:
                out[f] = p
        return out

    def to_json(self) -> dict:
        """The file format ``load_hierarchy`` reads."""
        doc = {"parents": {str(p): {str(f): c for c, f in enumerate(k)} for p, k in enumerate(self.children)}}
        if self.parent_names:
            doc["parent_names"] = list(self.parent_names)
        return doc


def shipped_mappings() -> list[str]:
    return sorted(p.stem for p in MAPPINGS_DIR.glob("*.json"))


def _read_mapping(source) -> tuple[dict, str]:
    if isinstance(source, dict):
        return source, "(dict)"
    text = os.fspath(source)
    path = Path(text).expanduser()
    if not path.suffix and os.sep not in text and "/" not in text:
        path = MAPPINGS_DIR / f"{text}.json"
    if not path.is_file():
        raise ConfigError(
            f"hierarchy mapping {text!r} not found: give a JSON file path or a shipped name "
            f"({', '.join(shipped_mappings())})"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"hierarchy mapping {path} is not valid JSON ({getattr(err, 'msg', err)})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"hierarchy mapping {path} must hold a JSON object")
    return doc, str(path)


def _as_int(value, where: str, what: str) -> int:
    try:
        if isinstance(value, bool) or float(value) != int(value):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"hierarchy mapping {where}: {what} {value!r} is not an integer") from None


def load_hierarchy(source="cifar100_parents10", num_classes: int | None = None) -> Hierarchy:
    """Read and validate a parent -> child mapping.

    ``source``: a shipped name (``cifar100_coarse20``, ``cifar100_parents10``), a JSON file path, a
    dict or a ``Hierarchy``. The JSON object is ``{"parents": {"<parent id>": {"<fine id>":
    <child index>, ...}, ...}}`` (optionally ``parent_names``); the study's own file (the
    ``"parents"`` object alone, docs/reference/heads.md 2.3) and lists of fine ids in child order are accepted too.
    Every fine class ``0..num_classes-1`` must belong to exactly one parent, and each parent's
    child indices must be ``0..n-1``; anything else is a one-line ``ConfigError``.
    """
    if isinstance(source, Hierarchy):
        h = source
    else:
        doc, where = _read_mapping(source)
        parents = doc.get("parents", doc)
        if not isinstance(parents, dict) or not parents:
            raise ConfigError(f"hierarchy mapping {where}: 'parents' must be a non-empty object")
        keyed = {}
        for key, value in parents.items():
            p = _as_int(key, where, "parent id")
            if isinstance(value, list):
                kids = [_as_int(f, where, f"class id of parent {p}") for f in value]
            elif isinstance(value, dict):
                slots = {}
                for f, c in value.items():
                    f, c = _as_int(f, where, f"class id of parent {p}"), _as_int(c, where, f"child index of parent {p}")
                    if c in slots:
                        raise ConfigError(f"hierarchy mapping {where}: parent {p} gives child index {c} twice")
                    slots[c] = f
                if sorted(slots) != list(range(len(slots))):
                    raise ConfigError(
                        f"hierarchy mapping {where}: child indices of parent {p} must be 0..{len(slots) - 1}, "
                        f"got {sorted(slots)}"
                    )
                kids = [slots[c] for c in range(len(slots))]
            else:
                raise ConfigError(f"hierarchy mapping {where}: parent {p} must map to an object or a list")
            if not kids:
                raise ConfigError(f"hierarchy mapping {where}: parent {p} has no classes")
            keyed[p] = tuple(kids)
        if sorted(keyed) != list(range(len(keyed))):
            raise ConfigError(f"hierarchy mapping {where}: parent ids must be 0..{len(keyed) - 1}, got {sorted(keyed)}")
        names = doc.get("parent_names", []) if "parents" in doc else []
        h = Hierarchy(
            name=Path(where).stem if where != "(dict)" else "mapping",
            children=tuple(keyed[p] for p in range(len(keyed))),
            num_classes=0,
            parent_names=tuple(str(n) for n in names),
        )
        h = dataclasses.replace(h, num_classes=1 + max(f for k in h.children for f in k))
        _check_cover(h, where, num_classes)
    if num_classes is not None and h.num_classes != num_classes:
        _check_cover(h, h.name, num_classes)
    return h


def _check_cover(h: Hierarchy, where: str, num_classes: int | None) -> None:
    seen: dict[int, int] = {}
    for p, kids in enumerate(h.children):
        for f in kids:
            if f < 0:
                raise ConfigError(f"hierarchy mapping {where}: class id {f} is negative")
            if f in seen:
                where_twice = f"parents {seen[f]} and {p}" if seen[f] != p else f"parent {p}"
                raise ConfigError(f"hierarchy mapping {where}: class {f} is mapped twice ({where_twice})")
            seen[f] = p
    k = h.num_classes if num_classes is None else int(num_classes)
    extra = sorted(f for f in seen if f >= k)
    if extra:
        raise ConfigError(f"hierarchy mapping {where}: class ids {_short(extra)} are out of range for {k} classes")
    missing = sorted(set(range(k)) - set(seen))
    if missing:
        raise ConfigError(
            f"hierarchy mapping {where} does not cover classes {_short(missing)} of 0..{k - 1}: "
            f"every class needs exactly one parent"
        )


def _short(ids: list[int], n: int = 6) -> str:
    return ", ".join(map(str, ids[:n])) + (f" ... ({len(ids)} in all)" if len(ids) > n else "")


# ----------------------------------------------------------------------------------------------
# hierarchical head


def _trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


class ChildClassifiers(nn.Module):
    """One linear classifier per parent, stored batched: ``weight`` (P, M, d), ``bias`` (P, M).

    Parents with fewer than M children leave their extra rows unused (masked by the head).
    """

    def __init__(self, num_parents: int, max_children: int, in_features: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_parents, max_children, in_features))
        self.bias = nn.Parameter(torch.empty(num_parents, max_children)) if bias else None
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default range, per parent
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("nd,pmd->npm", h, self.weight)
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        p, m, d = self.weight.shape
        return f"parents={p}, max_children={m}, in_features={d}, bias={self.bias is not None}"


class HierarchicalHead(nn.Module):
    """Superclass classifier plus per-superclass classifiers (and optionally a shared fine one).

    - ``parent``: Linear(n -> P) on the embedding ``e``: parent logits ``z``.
    - ``child``: one classifier per parent over its own classes, reading ``e``
      (``child_input="features"``, the PhiNet 10-parent variant: 344 -> 10 per parent, no bias,
      34,400 weights) or ``relu(z)`` (``"parent_logits"``, the ResNet 20-parent variant:
      20 -> 5 per parent with bias).
    - ``shared`` (``shared=True``): one Linear over all K classes on the same input as the
      children: the original linear head for ``"features"`` (Stage A of the PhiNet runs), the
      study's jointly trained ``Linear(20, 100)`` on ``relu(z)`` for ``"parent_logits"``.

    Fine log-probabilities: ``log p(c) = log softmax(z)[parent(c)] + log softmax(child_parent(c))[c]``.
    Loss (``loss``): ``parent_weight * CE(z, parent) + child_weight * CE(child of the TRUE parent,
    child) + shared_weight * CE(shared, fine)``; a term whose own parameters are all frozen is
    left out, so one model serves every training stage (parent only, children only, joint).
    The ResNet joint stage is ``CE_p + 1.5 CE_shared`` (docs/reference/heads.md 2.3, step 5).

    ``predict`` sets the fine scores returned as ``"logits"``: ``"route"`` (the study's rule: the
    parent head picks ``p̂ = argmax z``, the child classifier of ``p̂`` picks the class; scores are
    the log of ``((1-ε) onehot(p̂) + ε softmax(z))[parent(c)] · p(c | parent(c))``, ε =
    ``route_smoothing``, so the argmax is always a child of ``p̂`` while loss and top-5 stay finite),
    ``"joint"`` (``log p(c)``), ``"shared"`` (the shared classifier's logits), or ``"auto"``
    (``"shared"`` while only the shared classifier of the two is trainable, else ``"route"``, so
    each stage reports the accuracy of what it trains; see ``prediction_mode``).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        mapping="cifar100_parents10",
        child_input: str = "features",
        child_bias: bool = False,
        shared: bool = False,
        parent_weight: float = 1.0,
        child_weight: float = 1.0,
        shared_weight: float = 1.0,
        predict: str = "auto",
        route_smoothing: float = 1e-3,
    ):
        super().__init__()
        self.hierarchy = load_hierarchy(mapping, num_classes)
        h = self.hierarchy
        if child_input not in ("features", "parent_logits"):
            raise ConfigError(f"hierarchical head: child_input must be 'features' or 'parent_logits', got {child_input!r}")
        if predict not in ("auto", "route", "joint", "shared"):
            raise ConfigError(
                f"hierarchical head: predict must be 'auto', 'route', 'joint' or 'shared', got {predict!r}")
        if predict == "shared" and not shared:
            raise ConfigError("hierarchical head: predict='shared' needs shared=True")
        limit = 2 / (h.max_children + 2)
        if not 0 < route_smoothing < limit:
            raise ConfigError(f"hierarchical head: route_smoothing must be in (0, {limit:.3g}), got {route_smoothing}")
        self.loss_weights = {"parent": float(parent_weight), "child": float(child_weight)}
        if shared:
            self.loss_weights["shared"] = float(shared_weight)
        if not any(self.loss_weights.values()):
            raise ConfigError("hierarchical head: every loss weight is 0")
        self.child_input, self.predict, self.route_smoothing = child_input, predict, float(route_smoothing)
        self.num_classes = num_classes
        d = in_features if child_input == "features" else h.num_parents
        self.parent = nn.Linear(in_features, h.num_parents)
        self.child = ChildClassifiers(h.num_parents, h.max_children, d, bias=child_bias)
        self.shared = nn.Linear(d, num_classes) if shared else None

        m, parent_of = h.max_children, h.parent_of()
        slot = [0] * num_classes
        for p, kids in enumerate(h.children):
            for c, f in enumerate(kids):
                slot[f] = p * m + c
        valid = [[c < len(kids) for c in range(m)] for kids in h.children]
        membership = [[float(p == q) for q in range(h.num_parents)] for p in parent_of]
        # derived from the mapping (a constructor argument), so kept out of the state dict
        self.register_buffer("fine_parent", torch.tensor(parent_of, dtype=torch.long), persistent=False)
        self.register_buffer("fine_slot", torch.tensor(slot, dtype=torch.long), persistent=False)
        self.register_buffer("slot_valid", torch.tensor(valid, dtype=torch.bool), persistent=False)
        self.register_buffer("membership", torch.tensor(membership), persistent=False)

    def forward(self, e: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.parent(e)
        h = e if self.child_input == "features" else F.relu(z)
        scores = self.child(h).masked_fill(~self.slot_valid, float("-inf"))
        child_lp = F.log_softmax(scores, dim=-1).flatten(1)[:, self.fine_slot]  # log p(c | parent(c))
        out = {"parent_logits": z, "child_log_probs": child_lp}
        if self.shared is not None:
            out["shared_logits"] = self.shared(h)
        out["logits"] = self._fine_scores(z, child_lp, out)
        return out

    def prediction_mode(self) -> str:
        """``predict``, with ``"auto"`` resolved: ``"shared"`` while the shared classifier trains and
        the child classifiers are frozen (the fine-tune and joint stages), else ``"route"``."""
        if self.predict != "auto":
            return self.predict
        if self.shared is not None and _trains(self.shared) and not _trains(self.child):
            return "shared"
        return "route"

    def _fine_scores(self, z, child_lp, out) -> torch.Tensor:
        mode = self.prediction_mode()
        if mode == "shared":
            return out["shared_logits"]
        parent_lp = F.log_softmax(z, dim=1)
        if mode == "route":
            eps = self.route_smoothing
            picked = z.argmax(1, keepdim=True)
            routed = parent_lp + math.log(eps)
            lifted = torch.logaddexp(routed.gather(1, picked), torch.full_like(routed[:, :1], math.log1p(-eps)))
            parent_lp = routed.scatter(1, picked, lifted)
        return parent_lp[:, self.fine_parent] + child_lp

    def parent_targets(self, target: torch.Tensor) -> torch.Tensor:
        """Fine labels (N,) -> parent labels (N,); soft fine targets (N, K) -> soft parent targets (N, P)."""
        if target.dim() == 1:
            return self.fine_parent[target]
        return target.to(self.membership.dtype) @ self.membership

    def active_loss_weights(self) -> dict[str, float]:
        """The loss terms that train something now: weight != 0 and the term's module not all frozen."""
        trainable = {k: _trains(getattr(self, k)) for k in self.loss_weights}
        active = {k: w for k, w in self.loss_weights.items() if w and trainable[k]}
        return active or {k: w for k, w in self.loss_weights.items() if w}

    def loss(self, output: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Weighted sum of parent CE, child CE given the true parent, and shared CE (hard or soft targets)."""
        hard = target.dim() == 1
        if not hard:
            target = target.float()
        total = 0.0
        for term, w in self.active_loss_weights().items():
            if term == "parent":
                value = F.cross_entropy(output["parent_logits"], self.parent_targets(target))
            elif term == "child":
                lp = output["child_log_probs"]
                value = F.nll_loss(lp, target) if hard else -(target * lp).sum(1).mean()
            else:
                value = F.cross_entropy(output["shared_logits"], target)
            total = total + w * value
        return total

    def predict_parent_and_child(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The study's decision, spelled out: (parent, child index, fine class) per sample."""
        out = self.forward(e)
        parent = out["parent_logits"].argmax(1)
        inside = self.fine_parent[None, :] == parent[:, None]
        fine = out["child_log_probs"].masked_fill(~inside, float("-inf")).argmax(1)
        return parent, self.fine_slot[fine] - parent * self.hierarchy.max_children, fine


# ----------------------------------------------------------------------------------------------
# putting a head on a backbone

HEADS = {
    "linear": LinearHead,
    "adaptive": AdaptiveHead,
    "nmf": NMFHead,
    "nmf_sigmoid": _nmf_sigmoid,
    "hierarchical": HierarchicalHead,
}


def make_head(kind: str, in_features: int, num_classes: int, **kwargs) -> nn.Module:
    """A fresh head of a named kind; unknown names or options are one-line ``ConfigError``s."""
    if kind not in HEADS:
        raise ConfigError(f"unknown head {kind!r}: choose one of {', '.join(HEADS)}")
    try:
        return HEADS[kind](in_features, num_classes, **kwargs)
    except TypeError as err:
        raise ConfigError(f"head {kind!r}: {err}") from None


class HeadModel(nn.Module):
    """A backbone and a head with the uniform interface; the embedding is the backbone's pre-logits."""

    classifier_name = "head"  # the ClassifierMixin convention: what reset_classifier replaces

    def __init__(self, backbone: nn.Module, head: nn.Module, num_features: int, num_classes: int,
                 head_name: str = "custom", head_kwargs: dict | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_features = num_features
        self.num_classes = num_classes
        self.head_name = head_name
        self.head_kwargs = dict(head_kwargs or {})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False):
        e = self.backbone.forward_head(x, pre_logits=True)
        return e if pre_logits else self.head(e)

    def forward(self, x: torch.Tensor):
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh head of the same kind and options with ``num_classes`` outputs (0: identity)."""
        if num_classes > 0 and self.head_name == "custom":
            raise ConfigError("reset_classifier: this model's head was passed as a module; attach a new one")
        new = make_head(self.head_name, self.num_features, num_classes, **self.head_kwargs) if num_classes > 0 \
            else nn.Identity()
        self.head = new.to(next(self.backbone.parameters()).device)
        self.num_classes = num_classes
        if getattr(self, "info", None) is not None:
            self.info = dataclasses.replace(self.info, num_classes=num_classes)


class HierarchicalModel(HeadModel):
    """A ``HeadModel`` whose head is hierarchical: forward returns a dict (``logits``,
    ``parent_logits``, ``child_log_probs``[, ``shared_logits``]) in train and eval mode, and the
    engine's hooks ``head_loss`` / ``parent_targets`` are defined (docs/ENGINE_CONTRACT.md)."""

    @property
    def hierarchy(self) -> Hierarchy:
        return self.head.hierarchy

    def head_loss(self, output: dict, target: torch.Tensor) -> torch.Tensor:
        return self.head.loss(output, target)

    def parent_targets(self, target: torch.Tensor) -> torch.Tensor:
        return self.head.parent_targets(target)


def embedding_width(backbone: nn.Module) -> int:
    """Width of ``backbone.forward_head(x, pre_logits=True)``: ``num_features`` or one dummy pass."""
    width = getattr(backbone, "num_features", None)
    if isinstance(width, int) and width > 0:
        return width
    size = getattr(getattr(backbone, "info", None), "input_size", 224)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, 3, size, size, device=next(backbone.parameters()).device)
            return int(backbone.forward_head(backbone.forward_features(x), pre_logits=True).shape[1])
    finally:
        backbone.train(was_training)


def load_backbone_weights(backbone: nn.Module, source) -> None:
    """Load a checkpoint into a backbone whose classifier was removed, ignoring classifier weights.

    Accepts whatever ``load_weights`` accepts, plus the checkpoint of a whole ``HeadModel``
    (its ``backbone.*`` tensors are used) and the family's own formats (via the registry's converter).
    """
    from .loading import model_state
    from .weights import extract_state_dict, load_weights, read_checkpoint

    ckpt = read_checkpoint(source) if not isinstance(source, dict) else source
    info = getattr(backbone, "info", None)
    state = model_state(info.name, ckpt) if info is not None else extract_state_dict(ckpt)
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if state and any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    cls_name = getattr(backbone, "classifier_name", "")
    if cls_name:
        state = {k: v for k, v in state.items() if not k.startswith(cls_name + ".")}
    load_weights(backbone, state)


def attach_head(
    backbone: nn.Module | str,
    head: str | nn.Module = "linear",
    num_classes: int = 100,
    *,
    backbone_checkpoint: str | os.PathLike | None = None,
    backbone_pretrained: bool = False,
    backbone_kwargs: dict | None = None,
    **head_kwargs,
) -> HeadModel:
    """Put a classifier head on any backbone with the uniform interface.

    ``backbone``: a registered name (built with ``backbone_kwargs``; ``backbone_pretrained`` loads
    its published weights first) or a model. ``backbone_checkpoint``: weights for the backbone
    (its classifier weights are ignored), e.g. a fine-tuned run. The backbone's own classifier is
    removed; the head reads ``backbone.forward_head(x, pre_logits=True)``. ``head``: ``"linear"``,
    ``"adaptive"`` (``rank``, ``dropout``, ``input_relu``, ``hidden_activation``), ``"nmf"`` /
    ``"nmf_sigmoid"`` (``rank``, ``dropout``, ``input_relu``), ``"hierarchical"`` (``mapping``,
    ``child_input``, ``child_bias``, ``shared``, ``parent_weight``, ``child_weight``,
    ``shared_weight``, ``predict``, ``route_smoothing``), or an ``nn.Module``.
    Returns a ``HierarchicalModel`` for hierarchical heads, else a ``HeadModel``.
    """
    if isinstance(backbone, str):
        from .loading import create_model

        backbone = create_model(backbone, pretrained=backbone_pretrained, **(backbone_kwargs or {}))
    elif backbone_pretrained:
        from .registry import state_dict_converter
        from .weights import load_weights, pretrained_path

        info = getattr(backbone, "info", None)
        if info is None:
            raise ConfigError("backbone_pretrained needs a registered backbone (pass its name)")
        load_weights(backbone, pretrained_path(info), convert=state_dict_converter(info.name))
    backbone.reset_classifier(0)
    if backbone_checkpoint:
        load_backbone_weights(backbone, backbone_checkpoint)
    width = embedding_width(backbone)
    if isinstance(head, nn.Module):
        module, name = head, "custom"
    else:
        module, name = make_head(head, width, num_classes, **head_kwargs), head
    cls = HierarchicalModel if isinstance(module, HierarchicalHead) else HeadModel
    model = cls(backbone, module, width, num_classes, name, head_kwargs)
    info = getattr(backbone, "info", None)
    if info is not None:
        model.info = dataclasses.replace(
            info,
            name=f"{info.name}+{name}",
            num_classes=num_classes,
            areas={a: f"backbone.{m}" for a, m in info.areas.items()},
            weights=None,
            extra={**info.extra, "backbone": info.name, "head": name},
        )
    return model


def split_head_kwargs(kwargs: dict, backbone_options) -> tuple[dict, dict]:
    """Split builder keywords into (backbone options, everything else) by name."""
    backbone = {k: v for k, v in kwargs.items() if k in backbone_options}
    rest = {k: v for k, v in kwargs.items() if k not in backbone_options}
    return backbone, rest


def build_with_optional_head(name: str, make_plain, options, num_classes: int, head, kwargs: dict) -> nn.Module:
    """The body of a backbone builder that accepts ``head=...`` (``phinet``, ``resnet9``).

    Without a head, ``make_plain(num_classes, **options)`` is returned; with one, the registered
    ``name`` is built with the backbone options and ``attach_head`` adds the head.
    """
    config, rest = split_head_kwargs(kwargs, options)
    if head is None:
        if rest:
            raise TypeError(
                f"{name}() got unexpected keyword arguments {', '.join(sorted(rest))} "
                f"(head options need head=...; backbone options: {', '.join(options)})"
            )
        return make_plain(num_classes, **config)
    attach = {k: rest.pop(k) for k in BACKBONE_OPTIONS if k in rest}
    return attach_head(name, head, num_classes, backbone_kwargs=config, **attach, **rest)
