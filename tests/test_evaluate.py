"""`surgery evaluate` and `surgery.evaluate`: the loss and metrics are Keras' own `evaluate`, the confusion
matrix and per-class figures are scikit-learn's on the model's own predictions, --json and --plot carry the
same numbers, a run folder is evaluated with its final model and its classes.json, and bad input is one line."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import surgery

from helpers import CLASSES, assert_one_error_line, save_tiny_backbone, tiny_spec, write_pngs, write_spec

# The order a model trained on the npz below numbers its classes: not the folders' alphabetical order, so a
# folder of test images is only scored right if the labels are matched to the model's classes by name.
# A 3-cycle of the alphabetical order, not a swap: a swap is its own inverse, so mapping labels the wrong
# way round would pass with it.
RUN_ORDER = ["red", "blue", "green"]
ALPHABETICAL = sorted(CLASSES)  # blue, green, red
SVG = "{http://www.w3.org/2000/svg}"


def _colour_images(rng, classes, n):
    """n images per class in ``classes``' order: the class's colour plus noise, as float32 0-255 pixels."""
    x = [np.clip(np.array(CLASSES[c]) + rng.normal(0, 40, (16, 16, 3)), 0, 255) for c in classes for _ in range(n)]
    return np.array(x, dtype="float32"), np.repeat(np.arange(len(classes)), n)


def _read_folder(folder):
    """The PNGs of a class-subfolder folder as float32 pixels, class by class then by name (surgery's order)."""
    from PIL import Image

    files = sorted(folder.glob("*/*.png"), key=lambda p: (p.parent.name, p.name))
    return np.array([np.asarray(Image.open(p), dtype="float32") for p in files]), [p.parent.name for p in files]


def _colour_model(keras, path, classes, loss="sparse_categorical_crossentropy"):
    """Average colour -> Dense softmax, weighted so that each class's logit is its colour channel: it
    predicts real, varied classes from pixels with no training."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(inputs)
    head = keras.layers.Dense(len(classes), activation="softmax", name="head")
    outputs = head(x)
    channel = {"red": 0, "green": 1, "blue": 2}
    kernel = np.zeros((3, len(classes)), dtype="float32")
    for j, c in enumerate(classes):
        kernel[channel[c], j] = 0.05
    head.set_weights([kernel, np.zeros(len(classes), dtype="float32")])
    model = keras.Model(inputs, outputs, name="colour")
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
    model.optimizer.build(model.trainable_variables)  # saved with its state, so it loads without a warning
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, keras):
    """A colour model with no classes.json, an .npz it gets partly wrong, a test folder, and a short
    `surgery train` run whose classes.json numbers the classes red, blue, green."""
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)

    # 30 images, each the colour of its predicted class; every third one labelled as the next class, so the
    # confusion matrix has both a diagonal and off-diagonal cells.
    x, shown = _colour_images(rng, ALPHABETICAL, 10)
    y = np.where(np.arange(30) % 3 == 0, (shown + 1) % 3, shown)
    np.savez(root / "test.npz", x=x, y=y, class_names=np.array(ALPHABETICAL))
    (root / "colour").mkdir()
    colour = _colour_model(keras, root / "colour" / "colour.keras", ALPHABETICAL)

    # The run: trained on an npz whose class_names are red, blue, green (with label smoothing, so the model
    # is compiled for one-hot labels and evaluate must feed them so).
    tx, ty = _colour_images(rng, RUN_ORDER, 6)
    np.savez(root / "train.npz", x=tx, y=ty, class_names=np.array(RUN_ORDER))
    backbone = save_tiny_backbone(root / "tiny.keras", keras)
    spec = write_spec(
        root,
        tiny_spec(backbone, [{"epochs": 3, "learning_rate": 0.05, "label_smoothing": 0.1}], validation_split=0.0),
    )
    surgery.train(spec, str(root / "train.npz"), root / "run", echo=None, verbose=0)
    return {
        "root": root,
        "x": x,
        "y": y,
        "npz": root / "test.npz",
        "colour": colour,
        "run": root / "run",
        "folder": write_pngs(root / "test_images", 3, seed=2),
    }


def _keras_figures(keras, model_path, x, y, batch_size=7, one_hot=False):
    model = keras.saving.load_model(str(model_path))
    labels = keras.utils.to_categorical(y, model.output.shape[-1]) if one_hot else y
    figures = model.evaluate(x, labels, batch_size=batch_size, verbose=0, return_dict=True)
    return figures, model.predict(x, batch_size=batch_size, verbose=0)


def _assert_same_as_sklearn(evaluation, y, predicted, n_classes):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(n_classes))
    assert evaluation.confusion == confusion_matrix(y, predicted, labels=labels).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0.0)
    per_class = evaluation.per_class()
    assert [c["name"] for c in per_class] == evaluation.class_names
    np.testing.assert_allclose([c["precision"] for c in per_class], precision, atol=1e-12)
    np.testing.assert_allclose([c["recall"] for c in per_class], recall, atol=1e-12)
    np.testing.assert_allclose([c["f1"] for c in per_class], f1, atol=1e-12)
    assert [c["support"] for c in per_class] == support.tolist()


def test_metrics_are_keras_evaluate_and_confusion_is_sklearns(keras, setup):
    """loss and accuracy equal plain Keras `model.evaluate` on the same arrays (uneven batches of 7); the
    confusion matrix and per-class precision/recall/F1 equal scikit-learn's on the model's argmax."""
    evaluation = surgery.evaluate(setup["colour"], str(setup["npz"]), batch_size=7)
    figures, scores = _keras_figures(keras, setup["colour"], setup["x"], setup["y"])
    assert set(evaluation.metrics) == set(figures) == {"loss", "accuracy"}
    for name, value in figures.items():
        assert evaluation.metrics[name] == pytest.approx(value, abs=1e-5), name
    assert evaluation.n == 30 and evaluation.class_names == ALPHABETICAL
    predicted = scores.argmax(axis=1)
    _assert_same_as_sklearn(evaluation, setup["y"], predicted, 3)
    matrix = np.array(evaluation.confusion)
    # The data makes the figures worth checking: right and wrong answers, every class predicted.
    assert 0 < np.trace(matrix) < 30 and (matrix.sum(axis=0) > 0).all()
    assert evaluation.metrics["accuracy"] == pytest.approx(np.trace(matrix) / 30, abs=1e-6)
    # Arrays given from Python are the same test set.
    arrays = surgery.evaluate(setup["colour"], (setup["x"], setup["y"]), batch_size=7)
    assert arrays.metrics == pytest.approx(evaluation.metrics, abs=1e-6)
    assert arrays.confusion == evaluation.confusion


@pytest.mark.slow
def test_preprocess_option_changes_what_the_model_sees(keras, setup):
    """--preprocess tf feeds x / 127.5 - 1, as Keras' own evaluate on those pixels gives."""
    evaluation = surgery.evaluate(setup["colour"], str(setup["npz"]), batch_size=7, preprocess="tf")
    figures, scores = _keras_figures(keras, setup["colour"], setup["x"] / 127.5 - 1, setup["y"])
    plain = surgery.evaluate(setup["colour"], str(setup["npz"]), batch_size=7)
    assert evaluation.metrics["loss"] == pytest.approx(figures["loss"], abs=1e-5)
    assert evaluation.metrics["loss"] != pytest.approx(plain.metrics["loss"], abs=1e-3)
    _assert_same_as_sklearn(evaluation, setup["y"], scores.argmax(axis=1), 3)


def _confusion_rows(lines):
    start = lines.index("confusion (rows: true class, columns: predicted)")
    rows = {}
    for line in lines[start + 2 : start + 5]:
        name, *counts = line.split()
        rows[name] = [int(c) for c in counts]
    return rows


@pytest.mark.slow
def test_cli_text_json_and_svg_plot_carry_the_same_numbers(cli, tmp_path, keras, setup):
    """--json parses and holds Keras' figures and sklearn's confusion; the text report and the SVG show
    the same confusion counts; the plot note goes to stderr so stdout stays JSON."""
    figures, scores = _keras_figures(keras, setup["colour"], setup["x"], setup["y"])
    from sklearn.metrics import confusion_matrix

    confusion = confusion_matrix(setup["y"], scores.argmax(axis=1), labels=[0, 1, 2]).tolist()
    plot = tmp_path / "confusion.svg"
    result = cli("evaluate", setup["colour"], "--data", setup["npz"], "--batch-size", 7, "--json", "--plot", plot)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["images"] == 30 and found["classes"] == ALPHABETICAL
    assert found["confusion"] == confusion
    for name, value in figures.items():
        assert found["metrics"][name] == pytest.approx(value, abs=1e-5)
    assert [c["support"] for c in found["per_class"]] == np.bincount(setup["y"], minlength=3).tolist()
    assert f"wrote {plot} (3 x 3 confusion matrix)" in result.stderr

    svg = ET.parse(plot).getroot()
    assert svg.tag == f"{SVG}svg"
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert [int(t) for t in texts if t.isdigit()] == [v for row in confusion for v in row]
    assert set(ALPHABETICAL) <= set(texts)

    text = cli("evaluate", setup["colour"], "--data", setup["npz"], "--batch-size", 7)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0] == f"evaluated {setup['colour']} on 30 images of {setup['npz']}"
    assert f"loss {figures['loss']:.4f}" in lines[1] and f"accuracy {figures['accuracy']:.4f}" in lines[1]
    assert _confusion_rows(lines) == dict(zip(ALPHABETICAL, confusion))


def test_plot_is_not_overwritten_without_force(cli, tmp_path, setup):
    """An existing plot file stays as it was (exit 2, one line, before evaluating); --force replaces it; a
    .png plot is a real PNG."""
    plot = tmp_path / "c.svg"
    plot.write_text("mine")
    result = cli("evaluate", setup["colour"], "--data", setup["npz"], "--plot", plot)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, str(plot), "already exists; pass --force")
    assert result.stdout == "" and plot.read_text() == "mine"
    forced = cli("evaluate", setup["colour"], "--data", setup["npz"], "--plot", plot, "--force")
    assert forced.exit_code == 0, forced.output
    assert ET.parse(plot).getroot().tag == f"{SVG}svg"

    from PIL import Image

    png = cli("evaluate", setup["colour"], "--data", setup["npz"], "--plot", tmp_path / "c.png")
    assert png.exit_code == 0, png.output
    with Image.open(tmp_path / "c.png") as image:
        assert image.format == "PNG" and image.size[0] > 100


@pytest.mark.slow
def test_a_run_folder_is_evaluated_with_its_final_model_and_classes_json(cli, tmp_path, keras, setup):
    """The run folder's classes.json numbers classes red, blue, green; the test folder's subfolders sort
    blue, green, red, so the labels must be matched by name. The final model (not best.keras, replaced here by
    another model) is used, compiled for one-hot labels (label smoothing) as it was trained."""
    run = shutil.copytree(setup["run"], tmp_path / "run")
    assert json.loads((run / "classes.json").read_text())["class_names"] == RUN_ORDER
    shutil.copy(setup["colour"], run / "best.keras")  # a different model: must not be the one evaluated

    result = cli("evaluate", run, "--data", setup["folder"], "--batch-size", 4, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)

    x, folder_classes = _read_folder(setup["folder"])
    y = np.array([RUN_ORDER.index(c) for c in folder_classes])
    figures, scores = _keras_figures(keras, run / "tiny.keras", x, y, batch_size=4, one_hot=True)
    assert found["classes"] == RUN_ORDER and found["images"] == 9
    for name, value in figures.items():
        assert found["metrics"][name] == pytest.approx(value, abs=1e-5), name
    from sklearn.metrics import confusion_matrix

    assert found["confusion"] == confusion_matrix(y, scores.argmax(axis=1), labels=[0, 1, 2]).tolist()
    # The same as the API on the final model file itself.
    direct = surgery.evaluate(run / "tiny.keras", str(setup["folder"]), batch_size=4)
    assert direct.metrics == pytest.approx(found["metrics"], abs=1e-6)


def test_a_run_folder_evaluates_a_subset_of_its_classes(keras, setup):
    """Test data with only some of the run's classes: labels in the run's numbering, the other classes
    with zero support."""
    folder = write_pngs(setup["root"] / "subset", 2, classes={"green": CLASSES["green"], "red": CLASSES["red"]})
    evaluation = surgery.evaluate(setup["run"], str(folder), batch_size=4)
    x, folder_classes = _read_folder(folder)
    y = np.array([RUN_ORDER.index(c) for c in folder_classes])
    figures, scores = _keras_figures(keras, setup["run"] / "tiny.keras", x, y, batch_size=4, one_hot=True)
    assert evaluation.class_names == RUN_ORDER
    assert evaluation.metrics["loss"] == pytest.approx(figures["loss"], abs=1e-5)
    _assert_same_as_sklearn(evaluation, y, scores.argmax(axis=1), 3)
    assert [c["support"] for c in evaluation.per_class()] == [2, 0, 2]


def test_a_model_compiled_with_a_string_categorical_loss(tmp_path, keras, setup):
    """A model compiled in plain Keras with loss="categorical_crossentropy" (the tutorials' way) is evaluated
    with one-hot labels, giving Keras' own figures, not an internal error."""
    model = _colour_model(keras, tmp_path / "onehot.keras", ALPHABETICAL, loss="categorical_crossentropy")
    evaluation = surgery.evaluate(model, str(setup["npz"]), batch_size=7)
    figures, scores = _keras_figures(keras, model, setup["x"], setup["y"], one_hot=True)
    assert evaluation.metrics["loss"] == pytest.approx(figures["loss"], abs=1e-5)
    _assert_same_as_sklearn(evaluation, setup["y"], scores.argmax(axis=1), 3)


@pytest.mark.parametrize("activation, threshold", [("sigmoid", 0.5), ("linear", 0.0)])
def test_an_uncompiled_binary_model(tmp_path, keras, setup, activation, threshold):
    """One unit, saved uncompiled: evaluate compiles it for binary cross-entropy (from logits for a linear
    unit); the loss is Keras' BinaryCrossentropy, and the confusion is sklearn's on scores above the head's
    threshold: 0.5 for a probability, 0 for a logit. The green images' logits lie around 0, within the
    noise, so about half of them score between 0 and 0.5: a logit thresholded at 0.5 is counted wrong."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(1, activation=activation)
    model = keras.Model(inputs, dense(x))
    dense.set_weights([np.array([[0.02], [0.0], [-0.02]], dtype="float32"), np.zeros(1, dtype="float32")])
    model.save(str(tmp_path / "binary.keras"))
    keep = setup["y"] < 2
    x_two, y_two = setup["x"][keep], setup["y"][keep]
    np.savez(tmp_path / "two.npz", x=x_two, y=y_two, class_names=np.array(["blue", "green"]))

    evaluation = surgery.evaluate(tmp_path / "binary.keras", str(tmp_path / "two.npz"), batch_size=7)
    scores = model.predict(x_two, verbose=0)[:, 0]
    bce = keras.losses.BinaryCrossentropy(from_logits=activation == "linear")
    loss = float(bce(y_two.reshape(-1, 1).astype("float32"), scores.reshape(-1, 1)))
    assert evaluation.class_names == ["blue", "green"]
    assert evaluation.metrics["loss"] == pytest.approx(loss, abs=1e-5)
    predicted = (scores > threshold).astype(int)
    assert 0 < predicted.sum() < len(predicted)  # both classes predicted
    if activation == "linear":
        assert ((scores > 0) != (scores > 0.5)).sum() >= 3  # the input tells the two thresholds apart
    _assert_same_as_sklearn(evaluation, y_two, predicted, 2)
    assert evaluation.metrics["accuracy"] == pytest.approx((predicted == y_two).mean())
    # compiled with an optimizer and no loss (nothing to evaluate with): compiled for its head all the same
    model.compile(optimizer="sgd")
    model.save(str(tmp_path / "optimizer_only.keras"))
    again = surgery.evaluate(tmp_path / "optimizer_only.keras", str(tmp_path / "two.npz"), batch_size=7)
    assert again.metrics == pytest.approx(evaluation.metrics)


def test_plot_never_overwrites_an_image_of_the_data(cli, tmp_path, setup):
    """--plot --force aimed at an image inside --data is refused: no command writes over its own input."""
    data = shutil.copytree(setup["folder"], tmp_path / "data")
    image = data / "red" / "0.png"
    before = image.read_bytes()
    result = cli("evaluate", setup["colour"], "--data", data, "--plot", image, "--force")
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, "inside the data folder")
    assert image.read_bytes() == before
    beside = cli("evaluate", setup["colour"], "--data", data, "--plot", data / "red" / "confusion.png")
    assert beside.exit_code == 2  # a new file there would be read as an image of "red" next time
    assert not (data / "red" / "confusion.png").exists()
    npz = tmp_path / "test.npz"
    np.savez(npz, x=np.zeros((3, 16, 16, 3)), y=np.array([0, 1, 2]))
    same = cli("evaluate", setup["colour"], "--data", npz, "--plot", tmp_path / "out.png", "--force")
    assert same.exit_code == 0, same.stderr


# --- bad input: one line, exit 2, no plot file -------------------------------------------------------------


def _bad_cases(tmp_path, keras, setup):
    four = write_pngs(tmp_path / "four", 1, classes={**CLASSES, "black": (0, 0, 0)})
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "broken.keras").write_bytes(b"not a zip archive")
    empty_run = shutil.copytree(setup["run"], tmp_path / "empty_run")
    (empty_run / "tiny.keras").unlink()
    (empty_run / "best.keras").unlink()
    np.savez(tmp_path / "small.npz", x=np.zeros((2, 8, 8, 3)), y=np.array([0, 1]))
    inputs = keras.Input((16, 16, 3))
    keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs)).save(str(tmp_path / "conv.keras"))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, [keras.layers.Dense(3)(pooled), pooled]).save(str(tmp_path / "two.keras"))
    damaged = write_pngs(tmp_path / "damaged", 1)
    (damaged / "red" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    colour, npz = setup["colour"], setup["npz"]
    return {
        "missing data": ([colour, "--data", tmp_path / "nope"], ["nope: --data: no such file or folder"]),
        "more classes than outputs": (
            [colour, "--data", four],
            ["the data has 4 classes but the model outputs 3"],
        ),
        "a class the run does not know": (
            [setup["run"], "--data", four],
            ['the data has class "black", which the model does not know', "red, blue, green"],
        ),
        "not a model file": ([tmp_path / "notes.txt", "--data", npz], ["notes.txt", "is neither a Keras model"]),
        "broken model file": ([tmp_path / "broken.keras", "--data", npz], ["broken.keras", "not a Keras model file"]),
        "missing model file": ([tmp_path / "gone.keras", "--data", npz], ["gone.keras: no such model file"]),
        "run folder without a final model": ([empty_run, "--data", npz], [str(empty_run), "is a folder"]),
        "images of another size": (
            [colour, "--data", tmp_path / "small.npz"],
            ["x holds images of shape (8, 8, 3)", "(16, 16, 3)"],
        ),
        # The model is no classifier: that is the error, not a class count (its last axis is no class axis).
        "not a classifier": (
            [tmp_path / "conv.keras", "--data", npz],
            ["conv.keras: the model's output has shape (None, 14, 14, 2), not (batch, classes)"],
        ),
        "two outputs": (
            [tmp_path / "two.keras", "--data", npz],
            ["two.keras: the model has 2 outputs; surgery evaluates a classifier with one"],
        ),
        "an image that is not one": ([colour, "--data", damaged], ["1 of 3 image files cannot be read as images"]),
    }


BAD = [
    "missing data",
    "more classes than outputs",
    "a class the run does not know",
    "not a model file",
    "broken model file",
    "missing model file",
    "run folder without a final model",
    "images of another size",
    "not a classifier",
    "two outputs",
    "an image that is not one",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_leaves_no_plot(cli, tmp_path, keras, setup, case):
    """Each bad input: exit 2, one `error:` line naming the problem, and no plot file (nor a temporary one)."""
    args, fragments = _bad_cases(tmp_path, keras, setup)[case]
    plots = tmp_path / "plots"
    plots.mkdir()
    result = cli("evaluate", *args, "--plot", plots / "confusion.svg")
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, *fragments)
    assert list(plots.iterdir()) == []


@pytest.mark.parametrize(
    "plot,fragment",
    [
        ("confusion.pdf", "cannot plot to confusion.pdf: give a file ending in .svg or .png"),
        ("no/c.svg", "does not exist"),
    ],
)
def test_bad_plot_path_fails_before_evaluating(cli, tmp_path, setup, plot, fragment):
    """A plot path that cannot be written is refused before the model is loaded: one line, nothing written."""
    result = cli("evaluate", setup["colour"], "--data", setup["npz"], "--plot", tmp_path / plot)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, fragment)
    assert result.stdout == "" and list(tmp_path.iterdir()) == []
