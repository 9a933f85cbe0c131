"""Run under ``torchrun --nproc_per_node 2``: two DDP steps of every registered model through the engine.

Rank 0 writes ``done.json`` (model -> ok) and, for a BatchNorm model, compares the sharded validation
with a single-process evaluation of the saved weights. Used by tests/test_distributed.py."""

import json
import os
import sys
from pathlib import Path

import ventralkit as vk
from ventralkit.engine.distributed import cleanup

data, out = Path(sys.argv[1]), Path(sys.argv[2])
models = sys.argv[3:] or vk.list_models()
rank = int(os.environ.get("RANK", "0"))
done = {}
for name in models:
    size = 64 if name.startswith("v1_resnet") else 32
    kwargs = {"outer_times": 1} if name == "cornet_s100" else {}
    res = vk.train(vk.TrainConfig(model=name, model_kwargs=kwargs, data_path=str(data), image_size=size, epochs=1,
                                  num_classes=vk.model_info(name).num_classes,  # a hierarchy maps all its classes
                                  batch_size=2, max_steps_per_epoch=2, workers=0, lr=0.01, device="cpu",
                                  progress=False, log_every=1, output_path=str(out / name)))
    done[name] = True
    if rank == 0 and name == "cornet_s":
        from torch.utils.data import DataLoader

        from ventralkit.data.folders import ImageFolderDataset
        from ventralkit.data.transforms import eval_transform
        from ventralkit.engine.evaluate import evaluate

        model = vk.create_model("cornet_s", checkpoint=str(out / name / "checkpoints" / "last.pt"))
        ds = ImageFolderDataset(data / "val", eval_transform(model.info, size))
        ref = evaluate(model, DataLoader(ds, batch_size=2), device="cpu", progress=False)
        done["cornet_s_val"] = {"ddp": [res.last_val["top1"], res.last_val["loss"]], "single": [ref.top1, ref.loss]}
if rank == 0:
    (out / "done.json").write_text(json.dumps(done))
cleanup()
