"""thingsvision's features for tests/test_thingsvision_agreement.py, extracted in a separate process.

    PYTHONPATH=.peers/thingsvision python tests/scripts/thingsvision_reference.py JOB.json OUTPUT.npz

JOB names the image folder and, per torchvision model, a state-dict file and the module names to extract.
Each model goes through thingsvision 2.7.3's own pipeline: ``get_extractor(source="torchvision",
pretrained=False, model_path=FILE)`` (torchvision's architecture, the file's weights), its default
transformations (Resize(256), CenterCrop(224), ToTensor, ImageNet mean/std), its ``ImageDataset`` (its
file order, PIL ``convert("RGB")``) and ``DataLoader``, and ``extract_features(flatten_acts=True)``.
OUTPUT gets ``<model>/<module>`` (N x D float32) plus ``<model>/files`` (the file order thingsvision used).
ventralkit is never imported here.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np
import thingsvision
from thingsvision import get_extractor
from thingsvision.utils.data import DataLoader, ImageDataset


def extract(name: str, weights: str, modules: list[str], images: str, batch_size: int) -> dict[str, np.ndarray]:
    """One torchvision model's flattened features at ``modules``, as thingsvision computes them."""
    extractor = get_extractor(model_name=name, source="torchvision", device="cpu", pretrained=False,
                              model_path=weights)
    out = {}
    with tempfile.TemporaryDirectory() as order_dir:  # ImageDataset writes its file order there
        dataset = ImageDataset(root=images, out_path=order_dir, backend=extractor.get_backend(),
                               transforms=extractor.get_transformations())
        batches = DataLoader(dataset=dataset, batch_size=batch_size, backend=extractor.get_backend())
        feats = extractor.extract_features(batches=batches, module_names=modules, flatten_acts=True,
                                           output_type="ndarray")
        out[f"{name}/files"] = np.array([os.path.basename(p) for p in dataset.samples])
    for module in modules:
        out[f"{name}/{module}"] = np.asarray(feats[module], dtype=np.float32)
    return out


def main(job_path: str, out_path: str) -> int:
    with open(job_path) as f:
        job = json.load(f)
    out = {"version": np.array(thingsvision.__version__)}
    for name, spec in job["models"].items():
        out.update(extract(name, spec["weights"], spec["modules"], job["images"], job.get("batch_size", 3)))
    np.savez(out_path, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
