"""A new user's bad inputs, command by command: each gives one line naming what to fix, exit 2, no traceback,
and leaves no output folder behind.

This is the walk-through of issue 21 kept as a regression table: every row is a mistake a researcher makes in
the first hour (a wrong path, a file that is no checkpoint, a layer that does not exist, a number that makes no
sense). Rows are run in-process, so the whole table costs a few seconds; the slow paths (training, corruption)
have their own tests elsewhere.
"""

from __future__ import annotations

import pytest
from PIL import Image


@pytest.fixture
def inputs(tmp_path):
    """A small image folder and a set of wrong files, the kind a user passes by mistake."""
    root = tmp_path / "in"
    for c in "ab":
        (root / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 40), (40 * i, 90, 200)).save(root / "imgs" / c / f"{i}.png")
    (root / "empty").mkdir()
    (root / "text.pth").write_text("hello world\n")
    (root / "png.pth").write_bytes((root / "imgs" / "a" / "0.png").read_bytes())
    (root / "random.pth").write_bytes(bytes(range(256)) * 12)
    (root / "folder.pth").mkdir()
    (root / "empty.pth").write_bytes(b"")
    (root / "bad.json").write_text('{"a": 1')
    (root / "bad.toml").write_text("not toml [[\n")
    return root


# (argv with IN for the inputs folder and OUT for a fresh output folder, words the message must contain)
CASES = [
    ("train --model nosuch --dataset digits -o OUT", ["unknown model", "nosuch"]),
    ("train --dataset digits --lr nan -o OUT", ["--lr", "finite"]),
    ("train --dataset digits --lr -1 -o OUT", ["--lr", "positive"]),
    ("train --dataset digits --epochs 0 -o OUT", ["--epochs"]),
    ("train --dataset digits --batch_size 0 -o OUT", ["--batch_size"]),
    ("train --dataset digits --milestones -2 --scheduler multistep -o OUT", ["--milestones"]),
    ("train --dataset nosuch -o OUT", ["--dataset", "nosuch"]),
    ("train --data_path IN/nothere -o OUT", ["--data_path", "IN/nothere"]),
    ("train --data_path IN/empty -o OUT", ["train/"]),
    ("train --dataset digits --ckpt_path IN/text.pth -o OUT", ["IN/text.pth", "not a PyTorch checkpoint"]),
    ("train --dataset digits --ckpt_path IN/folder.pth -o OUT", ["IN/folder.pth", "folder"]),
    ("train --dataset digits --resume IN/png.pth -o OUT", ["IN/png.pth", "not a PyTorch checkpoint"]),
    ("train --config IN/bad.toml -o OUT", ["IN/bad.toml", "TOML"]),
    ("train --config IN/bad.json -o OUT", ["IN/bad.json", "JSON"]),
    ("train --dataset digits --imsize 7 -o OUT", ["--imsize"]),
    ("train --dataset digits --model_kwargs {bad -o OUT", ["--model_kwargs", "JSON"]),
    ("train --dataset digits --model_kwargs {\"nosuch\":1} -o OUT", ["nosuch"]),
    ("train --dataset digits --device cuda -o OUT", ["CUDA", "--device cpu"]),
    ("train --dataset digits --workers -1 -o OUT", ["--workers"]),
    ("train --dataset digits --recipe nosuch -o OUT", ["--recipe", "nosuch"]),
    ("train --dataset digits --trainable nosuchmodule -o OUT", ["--trainable", "nosuchmodule"]),
    ("test --model Z --random_init --data_path IN/nothere -o OUT", ["--data_path", "IN/nothere"]),
    ("test --model Z --data_path IN/imgs --ckpt_path IN/random.pth -o OUT", ["not a PyTorch checkpoint"]),
    ("test --model Z --data_path IN/imgs --ckpt_path IN/empty.pth -o OUT", ["IN/empty.pth", "empty"]),
    ("test --model Z --random_init --data_path IN/imgs/a --layer nosuch -o OUT", ["nosuch"]),
    ("test --model Z --random_init --data_path IN/empty -o OUT", ["IN/empty", "no image"]),
    ("features --model Z --random_init --data_path IN/imgs --layers nosuch -o OUT", ["nosuch"]),
    ("features --model Z --random_init --data_path IN/imgs --layers V1 --time_steps 5 -o OUT", ["5"]),
    ("features --model Z --random_init --data_path IN/empty -o OUT", ["IN/empty"]),
    ("features --model Z --data_path IN/imgs --ckpt_path IN/text.pth -o OUT", ["not a PyTorch checkpoint"]),
    ("features --model Z --random_init --data_path IN/imgs --batch_size 0 -o OUT", ["--batch_size"]),
    ("robustness --model Z --random_init --data_path IN/nothere -o OUT", ["--data_path", "IN/nothere"]),
    ("robustness --model Z --random_init --data_path IN/imgs -o OUT", ["corruption"]),
    ("v1-probe --model Z --random_init --layer nosuch -o OUT", ["nosuch"]),
    ("v1-probe --model Z --random_init --imsize 4 -o OUT", ["--imsize"]),
    ("neural --features IN/nothere --responses IN/nothere.npy -o OUT", ["--responses"]),
    ("neural --features IN/imgs --responses IN/text.pth -o OUT", ["--responses", "format"]),
    ("neural --features IN/imgs --responses IN/png.pth --metrics nosuch -o OUT", ["--metrics", "nosuch"]),
    ("features --model Z --data_path IN/imgs --areas IN/bad.json -o OUT", ["--areas", "bad.json", "not a JSON"]),
    ("features --model Z --data_path IN/imgs --areas IN/nothere.json -o OUT", ["--areas", "no such file"]),
    ("corrupt IN/nothere OUT", ["IN/nothere"]),
    ("corrupt IN/imgs OUT --corruptions nosuch", ["nosuch"]),
    ("corrupt IN/imgs OUT --severities 0", ["severity"]),
    ("corrupt IN/imgs OUT -j -2", ["--workers"]),
    ("corrupt IN/empty OUT", ["IN/empty"]),
    ("corrupt IN/imgs OUT --shard 4/4", ["--shard 4/4", "0..3"]),
    ("corrupt IN/imgs OUT --shard 1of4", ["--shard", "I/N"]),
    ("corrupt --merge OUT", ["does not exist", "the DST the shards wrote into"]),
    ("corrupt --merge IN/imgs", ["neither shard records", "--shard I/N"]),
    ("plot IN/nothere -o OUT/x.png", ["IN/nothere"]),
    ("plot IN/imgs -o OUT/x.png", ["IN/imgs", "run folder"]),
    ("compare IN/nothere -o OUT", ["IN/nothere"]),
    ("compare IN/imgs -o OUT", ["run folder"]),
    ("study feedback -o OUT --report_only", ["no study"]),
    ("study feedback -o OUT --dataset nosuch --epochs 1", ["--dataset", "nosuch"]),
    ("prepare miniimagenet IN/nothere OUT", ["IN/nothere"]),
]


@pytest.mark.parametrize("argv,words", CASES, ids=[c[0][:60] for c in CASES])
def test_a_bad_input_is_one_line_exit_2_and_leaves_nothing(cli, inputs, tmp_path, argv, words):
    out = tmp_path / "out"
    args = [a.replace("IN", str(inputs)).replace("OUT", str(out)) for a in argv.split()]
    code, stdout, stderr = cli(*args)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == 2, (code, stdout[-500:], stderr[-2000:])
    assert "Traceback" not in stderr + stdout
    assert len(lines) == 1, stderr
    message = lines[0]
    for word in words:
        assert word.replace("IN", str(inputs)) in message, (word, message)
    assert not out.exists(), f"{argv} left {sorted(p.name for p in out.rglob('*'))}"
