"""What a ``--model`` string names: a registered model, a torchvision or timm model, or a user's factory.

    cornet_s, S                      a registered model (``ventralkit models``) or a CORnet letter
    torchvision:resnet50             any classification model of the installed torchvision
    timm:convnext_tiny.fb_in1k       any timm model (the optional extra ``ventralkit[timm]``)
    path/to/nets.py:build            the function ``build`` of that Python file (which it runs)

This module only reads the string (no torch, nothing imported or run), so the command line can tell the
kinds apart before anything heavy happens. ``canonical_spec`` makes a file's path absolute, so that a
checkpoint or ``config.json`` says which file it was, wherever the next command runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

#: the library prefixes a ``--model`` may carry
LIBRARIES = ("torchvision", "timm")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model``: ``kind`` is registered | torchvision | timm | file; ``name`` the model name
    (registered, library) or the factory function; ``path`` the Python file (file specs only)."""

    kind: str
    name: str
    path: str | None = None

    @property
    def spec(self) -> str:
        """The string form that ``parse_spec`` reads back (what checkpoints and ``config.json`` store)."""
        if self.kind == "registered":
            return self.name
        if self.kind == "file":
            return f"{self.path}:{self.name}"
        return f"{self.kind}:{self.name}"

    @property
    def runs_code(self) -> bool:
        """A file spec runs the user's Python file: only when the user names it on this command."""
        return self.kind == "file"


def parse_spec(model: str) -> ModelSpec:
    """``--model`` -> ``ModelSpec``; a malformed string (an empty name, a file that is no ``.py``) is one line."""
    text = str(model).strip()
    head, sep, tail = text.rpartition(":")
    if not sep:
        return ModelSpec("registered", text)
    if head in LIBRARIES:
        if not tail:
            raise ConfigError(f"--model {text}: give a model name after '{head}:', e.g. {head}:resnet18 "
                              f"(`ventralkit models --source {head}` lists them)")
        return ModelSpec(head, tail)
    if head.endswith(".py"):
        if not tail.isidentifier():
            raise ConfigError(f"--model {text}: after the file, name the function that builds the model, "
                              f"e.g. {head}:build_model")
        return ModelSpec("file", tail, head)
    raise ConfigError(f"--model {text}: a prefix must be one of {', '.join(LIBRARIES)} or a Python file "
                      "(path/to/file.py:function)")


def is_source_spec(model: str | None) -> bool:
    """True for a torchvision, timm or file spec (anything that is not a registered name)."""
    return model is not None and ":" in str(model) and parse_spec(model).kind != "registered"


def canonical_spec(model: str) -> str:
    """The spec with a file's path made absolute (resolved against the working directory); others unchanged."""
    spec = parse_spec(model)
    if spec.kind != "file":
        return model
    return ModelSpec("file", spec.name, str(Path(spec.path).expanduser().resolve())).spec
