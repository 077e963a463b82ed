"""The training-loss figure: head train/val losses with the kept epoch, late-fusion sub-heads, towers (with the run
that trained a cached one), and a note for runs that trained nothing."""

from __future__ import annotations

from workbench.viz import training_curves_figure


def test_head_and_tower_losses_are_plotted_per_epoch():
    curves = {"train_loss": [0.9, 0.6, 0.5], "val_loss": [0.8, 0.7, 0.75], "best_epoch": 2,
              "encoders": {"image": {"encoder": "small_cnn", "train_loss": [2.0, 1.5], "from_run": "r0"}}}
    fig = training_curves_figure(curves)
    names = [trace.name for trace in fig.data]
    assert names == ["train", "val", "image tower (small_cnn), from run r0"]
    assert list(fig.data[0].x) == [1, 2, 3] and list(fig.data[1].y) == [0.8, 0.7, 0.75]
    assert fig.data[2].xaxis == "x2"  # towers on their own axes: their losses are not on the head's scale
    assert any("kept epoch 2" in (a.text or "") for a in fig.layout.annotations)


def test_late_fusion_sub_heads_and_runs_without_training():
    late = {"train_loss": [], "val_loss": [], "best_epoch": 0,
            "heads": [{"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.9]}, {"train_loss": [], "val_loss": []}]}
    assert [t.name for t in training_curves_figure(late).data] == ["head 1 train", "head 1 val"]
    empty = training_curves_figure({"train_loss": [], "val_loss": [], "best_epoch": 0, "encoders": {}})
    assert not empty.data and "Nothing was trained" in empty.layout.annotations[0].text
    assert not training_curves_figure(None).data
