"""The pipeline as library calls: what the command line does, from Python.

    import surgery
    model = surgery.build("specs/vgg16_cut_extend.json")              # a keras.Model
    run = surgery.train("spec.json", "data/train", "runs/x", epochs=3)  # the run: history, paths, metrics
    surgery.evaluate("runs/x", "data/test")                             # loss, metrics, per class, confusion
    done = surgery.apply("specs/vgg16_cut_extend.json", output="out/")  # built and written, all or none
    surgery.export("out/m.keras", "onnx")                               # a saved model in another format

Each function takes a spec as a path or a dict, and the loaded plugins if the caller has them (else the
installed ones are loaded). Bad input raises ``SurgeryError`` with the one line the command line prints.
"""

from .building import Applied, apply, bench, build, export, load, plan
from .training import evaluate, features, predict, sweep, train

__all__ = [
    "Applied",
    "apply",
    "bench",
    "build",
    "evaluate",
    "export",
    "features",
    "load",
    "plan",
    "predict",
    "sweep",
    "train",
]
