"""Every model of keras.applications as a backbone."""

from __future__ import annotations

import contextlib
import sys

from surgery import (
    APPLICATION_OPTIONS,
    OpError,
    check_weights_content,
    check_weights_file,
    hookimpl,
    keras,
    keras_cache_dir,
    one_line,
    shown,
)

# (Keras class, keras.applications module with its preprocess_input, default side, smallest side, extra options)
_ALPHA = {"alpha": {"type": "number", "exclusiveMinimum": 0}}
_PREP = {"include_preprocessing": {"type": "boolean"}}
_MOBILENET = {
    **_ALPHA,
    "depth_multiplier": {"type": "integer", "minimum": 1},
    "dropout": {"type": "number", "minimum": 0, "maximum": 1},
}
_MOBILENET_V3 = {
    **_ALPHA,
    **_PREP,
    "minimalistic": {"type": "boolean"},
    "dropout_rate": {"type": "number", "minimum": 0, "maximum": 1},
}

TABLE = [
    ("VGG16", "vgg16", 224, 32, {}),
    ("VGG19", "vgg19", 224, 32, {}),
    ("ResNet50", "resnet", 224, 32, {}),
    ("ResNet101", "resnet", 224, 32, {}),
    ("ResNet152", "resnet", 224, 32, {}),
    ("ResNet50V2", "resnet_v2", 224, 32, {}),
    ("ResNet101V2", "resnet_v2", 224, 32, {}),
    ("ResNet152V2", "resnet_v2", 224, 32, {}),
    ("InceptionV3", "inception_v3", 299, 75, {}),
    ("InceptionResNetV2", "inception_resnet_v2", 299, 75, {}),
    ("Xception", "xception", 299, 71, {}),
    ("MobileNet", "mobilenet", 224, 32, _MOBILENET),
    ("MobileNetV2", "mobilenet_v2", 224, 32, _ALPHA),
    ("MobileNetV3Small", "mobilenet_v3", 224, 32, _MOBILENET_V3),
    ("MobileNetV3Large", "mobilenet_v3", 224, 32, _MOBILENET_V3),
    ("DenseNet121", "densenet", 224, 32, {}),
    ("DenseNet169", "densenet", 224, 32, {}),
    ("DenseNet201", "densenet", 224, 32, {}),
    ("NASNetMobile", "nasnet", 224, 32, {}),
    ("NASNetLarge", "nasnet", 331, 32, {}),
    ("EfficientNetB0", "efficientnet", 224, 32, {}),
    ("EfficientNetB1", "efficientnet", 240, 32, {}),
    ("EfficientNetB2", "efficientnet", 260, 32, {}),
    ("EfficientNetB3", "efficientnet", 300, 32, {}),
    ("EfficientNetB4", "efficientnet", 380, 32, {}),
    ("EfficientNetB5", "efficientnet", 456, 32, {}),
    ("EfficientNetB6", "efficientnet", 528, 32, {}),
    ("EfficientNetB7", "efficientnet", 600, 32, {}),
    ("EfficientNetV2B0", "efficientnet_v2", 224, 32, _PREP),
    ("EfficientNetV2B1", "efficientnet_v2", 240, 32, _PREP),
    ("EfficientNetV2B2", "efficientnet_v2", 260, 32, _PREP),
    ("EfficientNetV2B3", "efficientnet_v2", 300, 32, _PREP),
    ("EfficientNetV2S", "efficientnet_v2", 384, 32, _PREP),
    ("EfficientNetV2M", "efficientnet_v2", 480, 32, _PREP),
    ("EfficientNetV2L", "efficientnet_v2", 480, 32, _PREP),
    ("ConvNeXtTiny", "convnext", 224, 32, _PREP),
    ("ConvNeXtSmall", "convnext", 224, 32, _PREP),
    ("ConvNeXtBase", "convnext", 224, 32, _PREP),
    ("ConvNeXtLarge", "convnext", 224, 32, _PREP),
    ("ConvNeXtXLarge", "convnext", 224, 32, _PREP),
]


def check(options):
    """A weights file Keras can load, checked before TensorFlow starts (a FIFO, an empty or foreign file)."""
    if options.get("weights") not in (None, "imagenet"):
        check_weights_file(options["weights"], error=OpError)


class _HeldDownloadLine:
    """stdout that holds back Keras' "Downloading data from URL" line until the download makes progress.

    keras.utils.get_file prints that line before it tries the URL; offline, the try fails at once and the
    user should see surgery's one error line only. When bytes arrive (the progress bar writes), the line
    is let through in its place, so a real download shows as Keras shows it.
    """

    def __init__(self, out):
        self._out = out
        self._held: list[str] = []
        self._through = False

    def write(self, text: str) -> int:
        if not self._through and text.startswith("Downloading data from"):
            self._held.append(text)
            return len(text)
        self.release()
        return self._out.write(text)

    def flush(self) -> None:
        if self._through or not self._held:
            self._out.flush()

    def discard(self) -> None:
        self._held.clear()

    def release(self) -> None:
        self._through = True
        for text in self._held:
            self._out.write(text)
        self._held.clear()

    def __getattr__(self, name):  # isatty, encoding, fileno: what the progress bar asks of stdout
        return getattr(self._out, name)


@contextlib.contextmanager
def _download_line_held():
    out = sys.stdout
    held = _HeldDownloadLine(out)
    sys.stdout = held
    try:
        yield
    except BaseException:
        held.discard()  # the download failed: surgery's error line says so
        raise
    else:
        held.release()
    finally:
        sys.stdout = out


def _builder(class_name: str):
    def build(weights="imagenet", **options):
        if weights not in (None, "imagenet"):
            check_weights_content(weights, error=OpError)
        constructor = getattr(keras().applications, class_name)
        if "input_shape" in options and options["input_shape"] is not None:
            options["input_shape"] = tuple(options["input_shape"])
        try:
            with _download_line_held():
                return constructor(weights=weights, **options)
        except ValueError as e:
            raise OpError(_keras_message(class_name, weights, e)) from None
        except OSError as e:  # h5py: a file that passed the checks but cannot be read to the end
            raise OpError(f'weights: "{shown(weights)}": the weights file cannot be read: {one_line(e, 200)}') from None
        except Exception as e:
            if weights == "imagenet" and "URL fetch failure" in str(e):
                reason = str(e).split(" -- ")[-1].strip()
                raise OpError(
                    f"could not download the ImageNet weights of {class_name} ({reason}) and no copy is "
                    f'cached in {keras_cache_dir()}; connect to the internet once, or set "weights" to a '
                    f'local weights file (e.g. made with model.save_weights("{class_name.lower()}.weights.h5"))'
                ) from None
            raise

    return build


def _keras_message(class_name: str, weights, err: Exception) -> str:
    text = one_line(err, None)
    if weights not in ("imagenet", None) and ("shape" in text or "layer" in text.lower()):
        return (
            f"the weights file {weights} does not fit {class_name} with these options "
            f"(include_top, input_shape, classes must match the model it was saved from): {text[:300]}"
        )
    return f"{class_name}: {text[:400]}"


@hookimpl
def surgery_register_backbones(register):
    for class_name, module, side, min_side, extra in TABLE:
        register(
            class_name.lower(),
            _builder(class_name),
            options={**APPLICATION_OPTIONS, **extra},
            preprocess=f"keras.applications.{module}.preprocess_input",
            input_shape=(side, side, 3),
            min_input_size=min_side,
            description=f"keras.applications.{class_name}",
            check=check,
        )
