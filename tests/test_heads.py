"""Classifier heads (models/heads.py) and the run comparison (analysis/compare.py).

Numbers from docs/reference/heads.md sections 2 and 9; fixes of the study's bugs from section 7.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from ventralkit.errors import ConfigError, DataError
from ventralkit.models import count_parameters, create_model
from ventralkit.models.heads import (
    AdaptiveHead,
    HeadModel,
    HierarchicalHead,
    HierarchicalModel,
    LinearHead,
    NMFHead,
    attach_head,
    load_hierarchy,
    make_head,
)

COARSE20 = load_hierarchy("cifar100_coarse20")
PARENTS10 = load_hierarchy("cifar100_parents10")


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- parameter counts and shapes --------------------------------------------------------------


@pytest.mark.parametrize("rank", [10, 25, 50, 75, 90])
def test_factorised_head_parameter_counts(rank):
    assert n_params(AdaptiveHead(344, 100, rank=rank)) == 445 * rank + 100  # docs/reference/heads.md 2.1
    assert n_params(NMFHead(344, 100, rank=rank)) == 445 * rank + 100


def test_flat_and_hierarchical_parameter_counts():
    assert n_params(LinearHead(344, 100)) == 34_500
    assert n_params(NMFHead(344, 100, rank=0)) == 34_500  # nnmf_base
    h10 = HierarchicalHead(344, 100, "cifar100_parents10", shared=True)
    assert (n_params(h10.parent), n_params(h10.child), n_params(h10.shared)) == (3_450, 34_400, 34_500)
    h20 = HierarchicalHead(1028, 100, "cifar100_coarse20", child_input="parent_logits", child_bias=True, shared=True)
    assert (n_params(h20.parent), n_params(h20.child), n_params(h20.shared)) == (20_580, 2_100, 2_100)


@pytest.mark.parametrize("kind", ["linear", "adaptive", "nmf", "nmf_sigmoid", "hierarchical"])
def test_head_output_shapes(kind):
    head = make_head(kind, 344, 100)
    out = head(torch.randn(2, 344))
    if kind == "hierarchical":
        assert out["logits"].shape == (2, 100) and out["parent_logits"].shape == (2, 10)
        assert out["child_log_probs"].shape == (2, 100)
    else:
        assert out.shape == (2, 100)


def test_registered_head_models_on_phinet():
    x = torch.randn(2, 3, 32, 32)
    for name, head_params in [("phinet_adaptive", 22_350), ("phinet_nmf", 22_350), ("phinet_hierarchical10", 72_350)]:
        model = create_model(name).eval()
        assert count_parameters(model.backbone) == 552_267 and n_params(model.head) == head_params
        out = model(x)
        logits = out["logits"] if isinstance(out, dict) else out
        assert logits.shape == (2, 100)
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 344)


def test_unknown_head_or_option_is_one_line():
    with pytest.raises(ConfigError, match="unknown head 'mlp'"):
        make_head("mlp", 8, 4)
    with pytest.raises(ConfigError, match="adaptive"):
        make_head("adaptive", 8, 4, rnak=2)


# ---- adaptive = rank-limited linear map; NMF stays non-negative ------------------------------------


def test_adaptive_head_is_a_rank_limited_linear_map():
    torch.manual_seed(0)
    head = AdaptiveHead(344, 100, rank=10).eval()
    x = torch.randn(5, 344)
    w = head.expand.weight @ head.reduce.weight  # compose the two factors by hand
    b = head.expand.weight @ head.reduce.bias + head.expand.bias
    torch.testing.assert_close(head(x), x @ w.T + b, rtol=1e-4, atol=1e-5)
    assert torch.linalg.matrix_rank(w) <= 10
    w2, b2 = head.low_rank_map()
    torch.testing.assert_close(w2, w)
    torch.testing.assert_close(b2, b)


def test_nmf_factors_stay_non_negative_after_optimizer_steps():
    torch.manual_seed(0)
    for kind in ("nmf", "nmf_sigmoid"):
        head = make_head(kind, 16, 10, rank=4)
        opt = torch.optim.Adam(head.parameters(), lr=0.5)
        for _ in range(3):  # push every weight down hard
            opt.zero_grad()
            head(torch.rand(8, 16) + 0.1).sum().backward()
            opt.step()
        for layer in (head.reduce, head.expand):
            assert (layer.weight >= 0).all()
            assert (layer.raw_weight < 0).any()  # the unconstrained parameter did go negative
            if kind == "nmf_sigmoid":
                assert (layer.weight <= 1).all()
        head.eval()
        x = torch.randn(3, 16)
        hidden = F.linear(F.relu(x), head.reduce.weight, head.reduce.bias)
        torch.testing.assert_close(head(x), F.linear(hidden, head.expand.weight, head.expand.bias))


# ---- hierarchical: mapping, inference, loss -----------------------------------------------------


def test_shipped_mappings_match_the_spec():
    assert COARSE20.num_parents == 20 and COARSE20.max_children == 5
    assert COARSE20.children[0] == (4, 30, 55, 72, 95) and COARSE20.children[19] == (41, 69, 81, 85, 89)
    assert PARENTS10.num_parents == 10 and PARENTS10.max_children == 10
    assert PARENTS10.children[0] == (4, 30, 55, 72, 95, 1, 32, 67, 73, 91)
    assert PARENTS10.parent_names[3] == "household"
    # each 10-parent group is the union of two standard superclasses
    coarse_of = COARSE20.parent_of()
    assert all(len({coarse_of[f] for f in kids}) == 2 for kids in PARENTS10.children)


def test_parent_targets_follow_the_mapping():
    head = HierarchicalHead(8, 100, "cifar100_coarse20")
    fine = torch.tensor([4, 1, 54, 10, 99])
    assert head.parent_targets(fine).tolist() == [0, 1, 2, 3, 13]
    soft = F.one_hot(fine, 100).float() * 0.5 + F.one_hot(torch.tensor([30, 32, 62, 9, 26]), 100) * 0.5
    torch.testing.assert_close(head.parent_targets(soft), F.one_hot(head.parent_targets(fine), 20).float())


def test_route_inference_picks_a_child_of_the_predicted_parent():
    torch.manual_seed(0)
    for mapping, child_input in (("cifar100_parents10", "features"), ("cifar100_coarse20", "parent_logits")):
        head = HierarchicalHead(32, 100, mapping, child_input=child_input, child_bias=True).eval()
        out = head(torch.randn(64, 32) * 3)
        parent = out["parent_logits"].argmax(1)
        pred = out["logits"].argmax(1)
        allowed = [set(k) for k in head.hierarchy.children]
        assert all(int(c) in allowed[int(p)] for p, c in zip(parent, pred))
        p2, child, fine = head.predict_parent_and_child(torch.randn(64, 32))
        assert all(head.hierarchy.children[p][c] == f for p, c, f in zip(p2.tolist(), child.tolist(), fine.tolist()))
        assert torch.isfinite(out["logits"]).all()  # finite scores: the val loss and top-5 are defined


def test_route_differs_from_joint_when_a_confident_child_sits_under_a_weaker_parent():
    head = HierarchicalHead(4, 100, "cifar100_parents10", child_bias=False).eval()
    with torch.no_grad():
        head.parent.weight.zero_()
        head.parent.bias.copy_(torch.log(torch.tensor([0.5, 0.4] + [0.1 / 8] * 8)))
        head.child.weight.zero_()
        head.child.weight[1, 3, 0] = 50.0  # parent 1, child 3 very confident on feature 0
    e = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    joint = HierarchicalHead(4, 100, "cifar100_parents10", predict="joint")
    joint.load_state_dict(head.state_dict())
    assert joint.eval()(e)["logits"].argmax(1).item() == PARENTS10.children[1][3]
    assert head(e)["logits"].argmax(1).item() in PARENTS10.children[0]  # the study's rule: parent first


def test_every_superclass_is_decoded_with_its_own_child_head():
    # the study's notebook decoded superclass 10 with superclass 1's child head (docs/reference/heads.md 2.3)
    head = HierarchicalHead(6, 100, "cifar100_coarse20", child_input="parent_logits", child_bias=True).eval()
    with torch.no_grad():
        head.parent.weight.zero_()
        head.child.weight.zero_()
        head.child.bias.zero_()
        for p in range(20):
            head.child.bias[p, p % 5] = 5.0
        for p in range(20):
            head.parent.bias.fill_(-5.0)
            head.parent.bias[p] = 5.0
            pred = head(torch.zeros(1, 6))["logits"].argmax(1).item()
            assert pred == COARSE20.children[p][p % 5], p


def test_hierarchical_loss_is_parent_ce_plus_child_ce_given_the_true_parent():
    torch.manual_seed(0)
    head = HierarchicalHead(16, 100, "cifar100_coarse20", child_bias=True)
    out = head(torch.randn(4, 16))
    y = torch.tensor([4, 30, 1, 99])
    parent_ce = F.cross_entropy(out["parent_logits"], head.parent_targets(y))
    child_ce = -out["child_log_probs"].gather(1, y[:, None]).mean()
    torch.testing.assert_close(head.loss(out, y), parent_ce + child_ce)
    # CutMix/MixUp-style soft targets: one-hot soft targets give the same value
    torch.testing.assert_close(head.loss(out, F.one_hot(y, 100).float()), head.loss(out, y))


def test_hierarchical_loss_has_no_double_softmax():
    # CE on softmax outputs (docs/reference/heads.md 7, item 3) cannot fall below ~3.6; ours goes to 0 when right
    head = HierarchicalHead(4, 100, "cifar100_parents10")
    with torch.no_grad():
        head.parent.weight.zero_()
        head.parent.bias.fill_(-30.0)
        head.parent.bias[0] = 30.0
        head.child.weight.zero_()
        head.child.weight[0, 2, 0] = 60.0
    out = head(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert head.loss(out, torch.tensor([PARENTS10.children[0][2]])).item() < 1e-6


def test_children_learn_from_the_true_parent_even_when_the_parent_head_is_wrong():
    head = HierarchicalHead(4, 100, "cifar100_coarse20", child_input="features", child_bias=True)
    with torch.no_grad():
        head.parent.weight.zero_()
        head.parent.bias.zero_()
        head.parent.bias[7] = 20.0  # predicts superclass 7 for everything
    head.parent.requires_grad_(False)  # children-only stage: only the child term is used
    head.loss(head(torch.randn(3, 4)), torch.tensor([4, 30, 55])).backward()  # all superclass 0
    grad = head.child.weight.grad.abs().sum(dim=(1, 2))
    assert grad[0] > 0 and grad[1:].sum() == 0


def test_loss_terms_and_prediction_follow_what_is_trainable():
    head = HierarchicalHead(8, 100, "cifar100_parents10", shared=True, shared_weight=1.5)
    assert head.active_loss_weights() == {"parent": 1.0, "child": 1.0, "shared": 1.5}
    assert head.prediction_mode() == "route"
    head.requires_grad_(False)
    head.shared.requires_grad_(True)
    assert head.active_loss_weights() == {"shared": 1.5} and head.prediction_mode() == "shared"
    out = head(torch.randn(2, 8))
    torch.testing.assert_close(out["logits"], out["shared_logits"])
    head.shared.requires_grad_(False)
    head.parent.requires_grad_(True)
    assert head.active_loss_weights() == {"parent": 1.0} and head.prediction_mode() == "route"


def test_child_weights_are_saved_with_the_model(tmp_path):
    # the study's child tensor was not a registered parameter, so never checkpointed (docs/reference/heads.md 7, item 3)
    torch.manual_seed(0)
    model = create_model("phinet_hierarchical10").eval()
    state = model.state_dict()
    assert state["head.child.weight"].shape == (10, 10, 344)
    torch.save({"model": state}, tmp_path / "h.pt")
    again = create_model("phinet_hierarchical10", checkpoint=str(tmp_path / "h.pt")).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(again(x)["logits"], model(x)["logits"])


def test_frozen_parts_do_not_change_during_a_stage(tmp_path):
    """The study's children stage, trained by the engine with ``trainable = ["head.child"]``: the child head
    moves, every other parameter and the frozen backbone's BatchNorm statistics keep their bytes."""
    from conftest import make_image_folder
    from ventralkit.engine.train import train

    torch.manual_seed(0)
    start = create_model("phinet_hierarchical10").state_dict()
    assert sum(k.endswith("running_mean") for k in start) == 24  # statistics that batches would move
    torch.save({"model": start}, tmp_path / "start.pt")
    data = make_image_folder(tmp_path / "data", classes=3, train_per_class=4, val_per_class=1)
    train(model="phinet_hierarchical10", checkpoint=str(tmp_path / "start.pt"), trainable=["head.child"],
          data_path=str(data), num_classes=100, image_size=32, batch_size=4, epochs=1, max_steps_per_epoch=2,
          workers=0, lr=0.1, device="cpu", progress=False, keep_epochs=0, output_path=str(tmp_path / "run"))
    after = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["model"]
    assert after.keys() == start.keys()
    assert {k for k in start if not torch.equal(start[k], after[k])} == {"head.child.weight"}


# ---- any backbone -------------------------------------------------------------------------------


def test_heads_work_on_cornet_z():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = attach_head("cornet_z", "adaptive", num_classes=10, rank=4).eval()
    assert isinstance(model, HeadModel) and model.num_features == 512
    assert model(x).shape == (2, 10) and n_params(model.head) == 512 * 4 + 4 + 4 * 10 + 10
    assert model.info.name == "cornet_z+adaptive" and model.info.areas["V4"] == "backbone.V4.output"
    mapping = {"parents": {"0": [0, 2, 4], "1": {"1": 0, "3": 1, "5": 2}}}
    hier = attach_head("cornet_z", "hierarchical", num_classes=6, mapping=mapping)
    assert isinstance(hier, HierarchicalModel)
    out = hier(x)
    loss = hier.head_loss(out, torch.tensor([3, 4]))
    loss.backward()
    assert out["logits"].shape == (2, 6) and hier.parent_targets(torch.tensor([3, 4])).tolist() == [1, 0]


def test_reset_classifier_keeps_the_head_kind():
    model = create_model("phinet_adaptive", rank=6)
    model.reset_classifier(12)
    assert isinstance(model.head, AdaptiveHead) and model.head.rank == 6 and model.info.num_classes == 12
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 12)
    model.reset_classifier(0)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 344)


def test_backbone_checkpoint_ignores_the_old_classifier(tmp_path):
    torch.manual_seed(0)
    tuned = create_model("phinet", num_classes=100)
    torch.save({"format": "ventralkit", "model": tuned.state_dict()}, tmp_path / "last.pt")
    model = create_model("phinet_nmf", rank=5, backbone_checkpoint=str(tmp_path / "last.pt"))
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, tuned.state_dict()[k]), k
    # a whole head model's checkpoint works too (its backbone.* part is used)
    torch.save({"model": model.state_dict()}, tmp_path / "head.pt")
    other = create_model("phinet_adaptive", rank=3, backbone_checkpoint=str(tmp_path / "head.pt"))
    assert torch.equal(other.backbone._layers[9]._layers[8].weight, tuned._layers[9]._layers[8].weight)


# ---- mapping files ------------------------------------------------------------------------------


def _write(tmp_path, doc) -> str:
    path = tmp_path / "map.json"
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(path)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"parents": {"0": [0, 1], "1": [2]}}, "does not cover classes 3 of 0..3"),
        ({"parents": {"0": [0, 1, 2], "1": [3, 1]}}, "class 1 is mapped twice \\(parents 0 and 1\\)"),
        ({"parents": {"0": {"0": 0, "1": 2}, "1": [2, 3]}}, "child indices of parent 0 must be 0..1"),
        ({"parents": {"0": [0, 1], "2": [2, 3]}}, "parent ids must be 0..1"),
        ({"parents": {"0": [0, 1], "1": [2, 3, 7]}}, "out of range for 4 classes"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_mapping_files_fail_with_one_line(tmp_path, doc, message):
    with pytest.raises(ConfigError, match=message) as err:
        HierarchicalHead(8, 4, _write(tmp_path, doc))
    assert "\n" not in str(err.value)


def test_missing_mapping_and_the_studys_own_format(tmp_path):
    with pytest.raises(ConfigError, match="cifar100_coarse20, cifar100_parents10"):
        load_hierarchy(str(tmp_path / "nope.json"))
    # parent_to_child_class_from_0_to_5.json: the parents object alone, keys in any order (docs/reference/heads.md 2.3)
    study = {str(p): {str(f): c for c, f in enumerate(k)} for p, k in reversed(list(enumerate(COARSE20.children)))}
    assert load_hierarchy(_write(tmp_path, study), 100).children == COARSE20.children
    with pytest.raises(ConfigError, match="does not cover"):
        load_hierarchy("cifar100_coarse20", num_classes=120)


# ---- comparison report --------------------------------------------------------------------------


def _fake_run(folder, model, kwargs, vals, num_classes=100, extra=None):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": model, "model_kwargs": kwargs,
                                                    "num_classes": num_classes, **(extra or {})}))
    lines = [{"phase": "train", "epoch": 0.5, "step": 1, "loss": 4.0, "top1": 0.9, "top5": 0.99}]
    lines += [{"phase": "val", "epoch": i + 1, "step": 10 * (i + 1), "loss": 1.0, **v} for i, v in enumerate(vals)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_compare_runs_table_files_and_cli(tmp_path, capsys):
    from ventralkit.analysis.compare import compare_runs
    from ventralkit.cli import main

    _fake_run(tmp_path / "adaptive", "phinet", {"head": "adaptive", "rank": 50,
                                               "backbone_checkpoint": "/gone/last.pt"},
              [{"top1": 0.60, "top5": 0.85}, {"top1": 0.69, "top5": 0.90}, {"top1": 0.65, "top5": 0.91}],
              extra={"num_trainable": 22_350})
    hier = tmp_path / "hier"
    _fake_run(hier / "parents", "phinet_hierarchical10", {}, [{"top1": 0.1, "top5": 0.3, "super_top1": 0.78}])
    _fake_run(hier / "children", "phinet_hierarchical10", {}, [{"top1": 0.5, "top5": 0.7, "super_top1": 0.78}])
    result = compare_runs([tmp_path / "adaptive", hier], output=tmp_path / "out")
    rows = {r.run: r for r in result.rows}
    a = rows["adaptive"]
    assert (a.head, a.backbone, a.params_backbone, a.params_head) == ("adaptive", "phinet", 552_267, 22_350)
    assert (a.top1, a.top5, a.epoch, a.super_top1, a.trainable) == (0.69, 0.91, 2, None, 22_350)
    c = rows["hier/children"]
    assert (c.head, c.params_head, c.super_top1) == ("hierarchical", 72_350, 0.78)
    assert set(result.files) == {"csv", "markdown", "png"} and all(p.is_file() for p in result.files.values())
    assert "| adaptive | adaptive | phinet | 552,267 | 22,350 |" in result.files["markdown"].read_text()
    assert main(["compare", str(tmp_path / "adaptive"), "-o", str(tmp_path / "cli"), "--no_plot"]) == 0
    assert "val top-1" in capsys.readouterr().out and (tmp_path / "cli" / "comparison.csv").is_file()
    with pytest.raises(DataError, match="not a run folder"):
        compare_runs([tmp_path / "out"])
    assert math.isclose(rows["hier/parents"].super_top1, 0.78)
