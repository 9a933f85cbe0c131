"""``ventralkit weights``: the published weights files: list, download, verify, import.

Files live in the weights folder ($VENTRALKIT_WEIGHTS, default ~/.cache/ventralkit/weights) under their
published names. A download is checked before it gets its final name: a full sha256 measured on the real
file refuses a file that differs (moved aside as NAME.rejected); a hash prefix taken only from a published
file name (CORnet's cornet_s-1d3f7974.pth) was never measured on the file, so it warns in one line and the
file's sha256 is recorded in hashes.json. VENTRALKIT_OFFLINE=1 never touches the network;
VENTRALKIT_WEIGHTS_URL replaces the host (a mirror keeping the original paths). torchvision:/timm: models'
weights go through those libraries.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import CheckpointError

HELP = "list, download, verify or import the published weights files (CORnet, PhiNet)"


def register(sub) -> None:
    p = sub.add_parser("weights", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    ls = action.add_parser("list", help="every published file: present?, hash status")
    ls.add_argument("--details", action="store_true", help="also the URL, hash source, preprocessing and paper")
    ls.set_defaults(func=run_list)
    dl = action.add_parser("download", help="download files into the weights folder and check them")
    dl.add_argument("names", nargs="+", metavar="NAME",
                    help="model or file name (cornet_s, S, cornet_s-1d3f7974.pth), or all")
    dl.set_defaults(func=run_download)
    ve = action.add_parser("verify", help="hash files now and apply the hash policy (default: every file present)")
    ve.add_argument("files", nargs="*", metavar="FILE", help="paths, or names of files in the weights folder")
    ve.set_defaults(func=run_verify)
    im = action.add_parser("import", help="copy a file obtained elsewhere into the folder under its registered name")
    im.add_argument("file", metavar="FILE",
                    help="the weights file (checked: hash policy, and it must load into the model)")
    im.add_argument("--name", default=None, help="which published file it is (model or file name); default: "
                    "from the file's name or hash")
    im.add_argument("--force", action="store_true", help="replace a different file already in the folder")
    im.set_defaults(func=run_import)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _folder_line() -> str:
    from ..models.download import OFFLINE_ENV, offline, weights_dir
    from ..models.weights_table import MIRROR_ENV

    mirror = os.environ.get(MIRROR_ENV, "").strip() or "none"
    source = "VENTRALKIT_WEIGHTS" if os.environ.get("VENTRALKIT_WEIGHTS") else "default"
    return (f"weights folder: {weights_dir()} ({source}); {OFFLINE_ENV}: {'yes' if offline() else 'no'}; "
            f"{MIRROR_ENV}: {mirror}")


def _hash_column(entry, path: Path) -> str:
    from ..models.download import recorded_check

    if path.is_file():
        check = recorded_check(entry, path)
        if check is None:
            return "not checked yet (ventralkit weights verify)"
        return f"{check.status}: sha256 {check.sha256[:16]}..."
    if entry.hash_policy == "full":
        return "full sha256 (a differing file is refused)"
    if entry.hash_policy == "prefix":
        return f"prefix {entry.sha256_prefix} from the file name (unconfirmed)"
    return "none published" + ("; gated: import it by hand" if entry.gated else "")


def run_list(args) -> int:
    from ..models.download import weights_dir
    from ..models.weights_table import weights_entries

    folder = weights_dir()
    print(_folder_line())
    rows = [("name", "file", "present", "hash")]
    for e in weights_entries():
        path = folder / e.filename
        rows.append((e.name, e.filename, "yes" if path.is_file() else "no", _hash_column(e, path)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
        if args.details and r is not rows[0]:
            _print_details(next(e for e in weights_entries() if e.name == r[0]))
    print("torchvision:/timm: models' weights are fetched and checked by torchvision / timm ($TORCH_HOME)")
    return 0


def _print_details(e) -> None:
    pre = e.preprocessing
    pre_text = (f"{pre['image_size']} px, {pre['mode']} (crop {pre['crop_fraction']:g}), {pre['interpolation']}, "
                f"mean {pre['mean']}, std {pre['std']}") if pre else "not published"
    for key, value in (("url", e.url), ("hash", e.hash_source), ("size", e.size or "not measured"),
                       ("preprocessing", pre_text), ("trained with", e.trained_with), ("paper", e.paper),
                       ("gated", e.gated)):
        if value:
            print(f"    {key}: {value}")


def _entries(names: list[str]):
    from ..models.weights_table import find_entry, weights_entries

    if names == ["all"]:
        return [e for e in weights_entries() if not e.gated]
    return [find_entry(n) for n in names]


def run_download(args) -> int:
    from ..models.download import ensure_weights

    for entry in _entries(args.names):
        check = ensure_weights(entry)
        print(f"{entry.name}: {check.path} ({check.status}, sha256 {check.sha256})")
    return 0


def _verify_targets(files: list[str]):
    """(path, entry or None) for each FILE, or every table file present in the weights folder."""
    from ..models.download import weights_dir
    from ..models.weights_table import find_entry, weights_entries

    folder = weights_dir()
    if not files:
        return [(folder / e.filename, e) for e in weights_entries() if (folder / e.filename).is_file()]
    targets = []
    for f in files:
        path = Path(f)
        if not path.exists() and os.sep not in f:  # a file name in the folder, or a model name
            path = folder / f if (folder / f).exists() else folder / find_entry(f).filename
        try:
            entry = find_entry(path.name)
        except CheckpointError:
            entry = None
        targets.append((path, entry))
    return targets


def run_verify(args) -> int:
    from ..models.download import verify_file

    targets = _verify_targets(args.files)
    if not targets:
        print(f"{_folder_line()}\nno published weights files in the folder (ventralkit weights download NAME)")
        return 0
    refused = []
    for path, entry in targets:
        check = verify_file(path, entry)
        detail = f": {check.detail}" if check.detail else ""
        print(f"{path}: {check.status}, sha256 {check.sha256}{detail}")
        if check.refused:
            refused.append(path.name)
    if refused:
        raise CheckpointError(f"{len(refused)} of {len(targets)} files refused ({', '.join(refused)}): not the "
                              "published files; download them again (ventralkit weights download NAME)")
    return 0


def _entry_for_import(path: Path, name: str | None):
    """The table entry a file to import is: ``--name``, else its file name, else its hash."""
    from ..models.download import hash_file
    from ..models.weights_table import find_entry, weights_entries

    if name:
        return find_entry(name)
    for e in weights_entries():
        if e.filename == path.name:
            return e
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; give the downloaded weights file")
    sha = hash_file(path)[0]
    for e in weights_entries():
        if (e.sha256 and e.sha256 == sha) or (e.sha256_prefix and sha.startswith(e.sha256_prefix)):
            return e
    raise CheckpointError(f"cannot tell which published file {path} is (its name and hash match none); pass "
                          "--name MODEL (see `ventralkit weights list`)")


def run_import(args) -> int:
    from ..models.weights_import import import_file

    path = Path(args.file)
    entry = _entry_for_import(path, args.name)
    check, copied = import_file(path, entry, force=args.force)
    note = f" ({check.detail})" if check.detail else ""
    what = "imported" if copied else "already in the folder"
    print(f"{entry.name}: {what}: {check.path} ({check.status}, sha256 {check.sha256}){note}")
    return 0
