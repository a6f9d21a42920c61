"""evaluate's and predict's figures and names without TensorFlow: the per-class table against scikit-learn on
a confusion matrix whose classes differ in size and in how often they are predicted, the decision of a
one-unit head, labels matched to the model's classes by name in a non-alphabetical order, and where predict
takes class names from. The commands' tests run the same code through a trained model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from surgery.errors import SpecError
from surgery.training import evaluate, predict
from surgery.training.data import DataError, Source

# rows: true class, columns: predicted. "zebra" is never predicted, "cat" never occurs, "ant" is predicted as
# often as it occurs (its precision and recall are equal); supports 6, 0, 5, 5.
CLASSES = ["dog", "cat", "ant", "zebra"]
CONFUSION = [[4, 1, 1, 0], [0, 0, 0, 0], [1, 0, 4, 0], [2, 3, 0, 0]]


def _evaluation(metrics=None):
    return evaluate.Evaluation(16, CLASSES, metrics or {"loss": 0.75, "accuracy": 0.6}, CONFUSION)


def test_per_class_figures_are_scikit_learns_from_the_same_predictions():
    truth, guess = [], []
    for i, row in enumerate(CONFUSION):
        for j, count in enumerate(row):
            truth += [i] * count
            guess += [j] * count
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, guess, labels=range(len(CLASSES)), zero_division=0
    )
    found = _evaluation().per_class()
    assert [c["name"] for c in found] == CLASSES
    np.testing.assert_allclose([c["precision"] for c in found], precision)
    np.testing.assert_allclose([c["recall"] for c in found], recall)
    np.testing.assert_allclose([c["f1"] for c in found], f1)
    assert [c["support"] for c in found] == support.tolist() == [6, 0, 5, 5]
    assert found[2]["precision"] == found[2]["recall"] == 0.8 and found[2]["f1"] == pytest.approx(0.8)
    assert isinstance(found[0]["support"], int)


def test_the_summary_names_the_class_recalled_worst_and_a_tie_by_name():
    assert _evaluation().summary() == "16 images: loss 0.7500, accuracy 0.6000; lowest recall: cat 0.000"
    tie = evaluate.Evaluation(1234, ["b", "a"], {"loss": 1.0}, [[1, 1], [1, 1]])
    assert tie.summary() == "1,234 images: loss 1.0000; lowest recall: a 0.500"
    assert evaluate.Evaluation(0, [], {"loss": 0.0}).summary() == "0 images: loss 0.0000"


def test_the_report_lines_are_the_metrics_the_table_and_the_confusion():
    report = evaluate.Evaluation(
        20, ["dog", "caterpillar"], {"loss": 0.5, "accuracy": 0.75}, [[10, 2], [3, 12345]]
    ).lines()
    assert report == [
        "loss 0.5000  accuracy 0.7500",
        "",
        "class        precision  recall     f1  support",
        "dog             0.7692  0.8333  0.8000       12",
        "caterpillar     0.9998  0.9998  0.9998   12,348",
        "",
        "confusion (rows: true class, columns: predicted)",
        # columns as wide as the longest name or count (11), after a gutter as wide as the longest name (11)
        " " * 13 + " " * 8 + "dog" + "  caterpillar",
        "dog" + " " * 8 + " " * 11 + "10" + " " * 12 + "2",
        "caterpillar" + " " * 12 + "3" + " " * 8 + "12345",
    ]
    short = evaluate.Evaluation(2, ["a", "b"], {"acc": 1.0}, [[1, 0], [0, 1]]).lines()
    assert short[2] == "class  precision  recall     f1  support" and short[-3:] == [
        " " * 10 + "a     b",
        "a         1     0",
        "b         0     1",
    ]


def test_the_json_holds_every_figure():
    found = _evaluation().as_dict()
    assert found == {
        "images": 16,
        "metrics": {"loss": 0.75, "accuracy": 0.6},
        "classes": CLASSES,
        "per_class": _evaluation().per_class(),
        "confusion": CONFUSION,
    }
    json.dumps(found)  # numbers JSON can write


def _head(activation, units):
    return SimpleNamespace(binary=units == 1, activation=activation)


def test_a_one_unit_head_decides_at_its_own_threshold():
    scores = np.array([[0.4], [0.6], [-0.2], [0.2]])
    assert evaluate._predicted(scores, _head("sigmoid", 1)).tolist() == [0, 1, 0, 0]  # probabilities: 0.5
    assert evaluate._predicted(scores, _head("linear", 1)).tolist() == [1, 1, 0, 1]  # logits: 0
    assert evaluate._predicted(np.array([[0.5], [0.0]]), _head("sigmoid", 1)).tolist() == [0, 0]  # on it: class 0
    assert evaluate._predicted(np.array([[0.1, 0.7, 0.2], [3, -1, 4]]), _head("softmax", 3)).tolist() == [1, 2]
    assert evaluate._predicted(scores, _head("sigmoid", 1)).dtype == np.int64  # indices into the confusion matrix


def _loss_named(name):
    """A loss object as Keras makes one: callable, with a config, named by its class."""
    return type(name, (), {"get_config": lambda self: {}, "__call__": lambda self, y, p: 0.0})()


def _function(name):
    def loss(y_true, y_pred):
        return 0.0

    loss.__name__ = name
    return loss


@pytest.mark.parametrize(
    ("loss", "one_hot"),
    [
        ("categorical_crossentropy", True),
        ("sparse_categorical_crossentropy", False),
        ("kld", True),
        (_function("categorical_hinge"), True),  # Keras' loss functions have no get_config
        (_function("binary_crossentropy"), False),
        (_loss_named("CategoricalCrossentropy"), True),
        (_loss_named("SparseCategoricalCrossentropy"), False),
        (type("categorical_crossentropy", (), {"__call__": lambda self, y, p: 0.0})(), False),  # no name, no config
        (None, False),
    ],
)
def test_labels_are_one_hot_exactly_when_the_model_was_compiled_with_a_one_hot_loss(loss, one_hot):
    assert evaluate._one_hot_loss(SimpleNamespace(loss=loss)) is one_hot
    assert evaluate._one_hot_loss(SimpleNamespace()) is False  # a model never compiled has no loss at all


def _source(class_names, labels):
    y = np.array(labels, dtype="int64")
    return Source(Path("test.npz"), "npz", class_names, x=np.zeros((len(y), 2, 2, 3), "float32"), y=y)


def test_labels_are_renumbered_to_the_models_classes_by_name():
    # the data lists its classes in its own order; the model numbers them as it was trained
    names, labels = evaluate.matched_labels(_source(["zebra", "ant"], [0, 1, 1, 0]), ["ant", "bee", "zebra"], 3)
    assert names == ["ant", "bee", "zebra"] and labels.tolist() == [2, 0, 0, 2]
    empty = Source(Path("images"), "folder", ["zebra", "ant"], files=[])  # its labels: an empty float array
    names, labels = evaluate.matched_labels(empty, ["ant", "zebra"], 2)
    assert labels.tolist() == []


def test_without_the_models_class_names_the_datas_are_used_and_the_rest_numbered():
    names, labels = evaluate.matched_labels(_source(["b", "a"], [1, 0]), None, 4)
    assert names == ["b", "a", "2", "3"] and labels.tolist() == [1, 0]
    assert evaluate.matched_labels(_source(["b", "a"], [1]), None, 1)[0] == ["b", "a"]  # one sigmoid unit: two
    with pytest.raises(DataError) as refused:
        evaluate.matched_labels(_source(["a", "b", "c"], [0]), None, 2)
    assert (
        str(refused.value)
        == "test.npz: --data: the data has 3 classes but the model outputs 2; give the model's classes.json"
    )
    with pytest.raises(DataError) as refused:
        evaluate.matched_labels(_source(["a", "b", "c"], [0]), None, 1)
    assert "outputs 1;" in str(refused.value)


def test_a_class_the_model_does_not_know_is_one_line_listing_twelve_of_the_models():
    known = [f"c{i:02d}" for i in range(13)]
    with pytest.raises(DataError) as refused:
        evaluate.matched_labels(_source(["c01", "new", "other"], [0]), known, 13)
    assert str(refused.value) == (
        'test.npz: --data: the data has class "new", which the model does not know; its classes: '
        + ", ".join(known[:12])
    )


def _loaded(tmp_path, class_names=None):
    return SimpleNamespace(class_names=class_names, source=str(tmp_path / "run" / "model.keras"))


def test_predicts_class_names_come_from_the_file_then_the_run_then_imagenet_then_indices(tmp_path, monkeypatch):
    (tmp_path / "names.json").write_text('{"class_names": ["b", "a", "c"]}')
    from_file = predict.class_names(_loaded(tmp_path, ["x", "y", "z"]), 3, str(tmp_path / "names.json"))
    assert (from_file.names, from_file.origin) == (["b", "a", "c"], "names.json")
    (tmp_path / "list.json").write_text('["q", "p"]')
    assert predict.read_classes(str(tmp_path / "list.json"), 2).names == ["q", "p"]
    from_run = predict.class_names(_loaded(tmp_path, ["z", "y", "x"]), 3, None)
    assert (from_run.names, from_run.origin) == (["z", "y", "x"], "classes.json")
    assert (
        predict.class_names(_loaded(tmp_path), 5, None).names,
        predict.class_names(_loaded(tmp_path), 5, None).origin,
    ) == (None, "indices")
    monkeypatch.setattr(predict, "imagenet_names", lambda: predict.Names(["imagenet"], "ImageNet"))
    assert predict.class_names(_loaded(tmp_path), 1000, None).origin == "ImageNet"
    assert predict.class_names(_loaded(tmp_path), 999, None).origin == "indices"


@pytest.mark.parametrize(
    ("text", "units", "says"),
    [
        ('["a", "b"', 2, "not valid JSON: Expecting ',' delimiter at line 1 column 10"),
        ('["a", "b"]', 3, "names 2 classes but the model outputs 3"),
        ('{"names": ["a"]}', 1, 'expected a JSON list of names, or an object with "class_names"'),
        ('"a"', 1, 'expected a JSON list of names, or an object with "class_names"'),
        ('["a", "a"]', 2, 'class_names names "a" twice; each class needs a name of its own'),
    ],
)
def test_a_class_names_file_that_does_not_fit_is_one_line(tmp_path, text, units, says):
    (tmp_path / "c.json").write_text(text)
    with pytest.raises(SpecError) as refused:
        predict.read_classes(str(tmp_path / "c.json"), units)
    assert str(refused.value) == f"{tmp_path / 'c.json'}: --classes: {says}"


def test_a_class_names_file_over_its_bound_is_refused_by_its_size(tmp_path):
    with open(tmp_path / "c.json", "wb") as f:
        f.truncate(17_000_000)
    with pytest.raises(SpecError) as refused:
        predict.read_classes(str(tmp_path / "c.json"), 2)
    assert str(refused.value) == f"{tmp_path / 'c.json'}: --classes: class names file is 17.0 MB; the limit is 16 MiB"


def test_a_runs_class_names_for_another_model_are_refused(tmp_path):
    with pytest.raises(SpecError) as refused:
        predict.class_names(_loaded(tmp_path, ["a", "b"]), 3, None)
    assert str(refused.value) == (
        f"{tmp_path / 'run' / 'classes.json'}: names 2 classes but the model outputs 3; give the right names with --classes"
    )


def _downloads(monkeypatch, get_file):
    """keras().utils.get_file replaced: what Keras downloads is not reachable from the tests."""
    monkeypatch.setattr(predict, "keras", lambda: SimpleNamespace(utils=SimpleNamespace(get_file=get_file)))


def test_imagenet_names_are_downloaded_as_keras_does_and_read_in_index_order(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in reversed(range(1000))}
    asked = []

    def get_file(fname, origin, cache_dir, cache_subdir):
        asked.append((fname, origin, cache_dir, cache_subdir))
        print("Downloading data from", origin)  # Keras says so on stdout, which is the command's output
        target = Path(cache_dir) / cache_subdir / fname
        target.parent.mkdir(parents=True)
        target.write_text(json.dumps(index))
        return str(target)

    _downloads(monkeypatch, get_file)
    found = predict.imagenet_names()
    assert asked == [(predict.IMAGENET_INDEX, predict.IMAGENET_INDEX_URL, str(tmp_path), "models")]
    assert capsys.readouterr().out == ""
    assert found.origin == "ImageNet" and found.names[:2] == ["class_0", "class_1"] and found.names[999] == "class_999"
    assert predict.imagenet_names().names == found.names and len(asked) == 1  # cached: read, not downloaded
    cached = tmp_path / "models" / predict.IMAGENET_INDEX
    del index["999"]
    cached.write_text(json.dumps(index))
    with pytest.raises(SpecError) as refused:
        predict.imagenet_names()
    assert str(refused.value) == (
        f"{cached}: is not Keras' ImageNet class index; delete it and Keras downloads it again"
    )
    with open(cached, "wb") as f:
        f.truncate(17_000_000)
    with pytest.raises(SpecError) as refused:
        predict.imagenet_names()
    assert str(refused.value) == f"{cached}: imagenet_class_index.json is 17.0 MB; the limit is 16 MiB"


def test_imagenet_names_offline_are_indices_with_a_note_saying_why(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] " + "x" * 200)

    _downloads(monkeypatch, offline)
    found = predict.imagenet_names()
    reason = ("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] " + "x" * 200)[:157] + "..."
    assert (found.names, found.origin) == (None, "indices")
    assert found.note == (
        f"ImageNet class names are not available offline: Keras downloads imagenet_class_index.json on first use "
        f"(as decode_predictions does) and could not ({reason}), and no copy is cached in {tmp_path / 'models'}; "
        "showing class indices. Connect to the internet once, or copy the file there"
    )


def _model(*shapes):
    return SimpleNamespace(outputs=[SimpleNamespace(shape=s) for s in shapes])


def test_predict_needs_one_output_of_batch_by_classes():
    predict._check_classifier(_model((None, 5)), "m.keras")
    with pytest.raises(SpecError) as refused:
        predict._check_classifier(_model((None, 5), (None, 2)), "m.keras")
    assert str(refused.value) == (
        "m.keras: the model has 2 outputs; predict needs a classifier with one (use `surgery features` for other "
        "outputs)"
    )
    with pytest.raises(SpecError) as refused:
        predict._check_classifier(_model((None, 7, 7, 512)), "m.keras")
    assert str(refused.value) == (
        "m.keras: the model's output has shape (None, 7, 7, 512), not (batch, classes); predict needs a "
        "classifier (use `surgery features` for other outputs)"
    )
