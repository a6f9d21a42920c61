"""``fit`` as a custom loop, for MultiWorkerMirroredStrategy, under which Keras 3's ``fit`` fails
(keras-team/keras#20585: "Attempt to convert a value (PerReplica...) to a Tensor").

It keeps what a run depends on from ``fit``:

- the dataset's batch is the global batch: every worker reads the whole pipeline (the same seed, so the
  same order) and keeps its part of each batch (TensorFlow's DATA sharding);
- the loss is the global batch's mean plus the model's own losses, as ``fit`` computes it, so the replicas'
  gradients, which the optimizer sums, add up to the gradient of one process on the whole batch;
- ``mixed_float16`` scales the loss through the compiled ``LossScaleOptimizer``, as ``fit`` does;
- the same Keras callbacks get the same calls and logs, so ``log.csv``, TensorBoard, the checkpoints and
  the progress bar are ``fit``'s.
"""

from __future__ import annotations

import math

from ..keras_env import keras


def _accuracy(metric):
    """Per-example 0/1 for the metric ``stages.loss_and_metrics`` chose (summed per replica, not averaged)."""
    k = keras()
    if isinstance(metric, k.metrics.BinaryAccuracy):
        threshold = metric.get_config()["threshold"]
        return lambda y, p: k.metrics.binary_accuracy(k.ops.reshape(y, (-1, 1)), p, threshold=threshold)
    if isinstance(metric, k.metrics.CategoricalAccuracy):  # one-hot labels (label smoothing)
        return k.metrics.categorical_accuracy
    return k.metrics.sparse_categorical_accuracy


def _steps(model, strategy, loss, metric, class_weight=None):
    """(train step, test step): each takes a distributed batch and returns [loss sum, correct, examples]."""
    import tensorflow as tf

    summed = type(loss).from_config({**loss.get_config(), "reduction": "sum"})
    correct = _accuracy(metric)
    weights = None if not class_weight else tf.constant([class_weight[i] for i in range(len(class_weight))], "float32")

    def forward(x, y, training, weighted=True):
        pred = model(x, training=training)
        n = tf.cast(tf.shape(y)[0], "float32")
        regularization = tf.add_n(model.losses) if model.losses else tf.constant(0.0)
        sample_weight = None
        if weights is not None and weighted:  # as fit applies class_weight: to the training loss only
            labels = tf.argmax(y, axis=-1) if len(y.shape) > 1 and y.shape[-1] > 1 else tf.reshape(y, (-1,))
            sample_weight = tf.gather(weights, tf.cast(labels, "int32"))
        data_loss = summed(y, pred, sample_weight=sample_weight)
        # fit logs each batch's mean loss weighted by its size: the sum, the model's losses once per example.
        return data_loss, regularization, tf.stack([data_loss + regularization * n, tf.reduce_sum(correct(y, pred)), n])

    def replica_train(x, y):
        context = tf.distribute.get_replica_context()
        n_global = context.all_reduce("sum", tf.cast(tf.shape(y)[0], "float32"))
        with tf.GradientTape() as tape:
            data_loss, regularization, totals = forward(x, y, True)
            # The optimizer sums the replicas' gradients: each adds its share of the global batch's mean,
            # and 1/replicas of the model's losses, which every replica computes whole.
            mean = data_loss / n_global + regularization / context.num_replicas_in_sync
            scaled = model.optimizer.scale_loss(mean)
        variables = model.trainable_variables
        model.optimizer.apply(tape.gradient(scaled, variables), variables)
        return totals

    def replica_test(x, y):
        return forward(x, y, False, weighted=False)[2]

    def reduced(fn):
        @tf.function
        def step(batch):
            x, y = batch
            return strategy.reduce("sum", strategy.run(fn, args=(x, y)), axis=None)

        return step

    return reduced(replica_train), reduced(replica_test)


class _Totals:
    def __init__(self):
        self.loss = self.correct = self.n = 0.0

    def add(self, sums) -> dict:
        loss, correct, n = (float(v) for v in sums)
        self.loss, self.correct, self.n = self.loss + loss, self.correct + correct, self.n + n
        return self.logs()

    def logs(self) -> dict:
        n = max(self.n, 1.0)
        return {"accuracy": self.correct / n, "loss": self.loss / n}


def _distributed(strategy, dataset):
    import tensorflow as tf

    # DATA: every worker reads the same pipeline and keeps its slice of each global batch. The default
    # (FILE) policy would split the input files, which in-memory arrays do not have.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _evaluate(dataset, step, callbacks) -> dict:
    callbacks.on_test_begin()
    totals = _Totals()
    for i, batch in enumerate(dataset):
        callbacks.on_test_batch_begin(i)
        callbacks.on_test_batch_end(i, totals.add(step(batch)))
    logs = totals.logs()
    callbacks.on_test_end(logs)
    return logs


def fit(
    model, sets, strategy, *, loss, metric, initial_epoch: int, epochs: int, callbacks: list, verbose, class_weight=None
) -> None:
    """Train ``model`` (compiled, built under ``strategy``) on ``sets`` for epochs ``initial_epoch`` .. ``epochs``."""
    k = keras()
    with strategy.scope():
        if not model.optimizer.built:  # variables are created under the strategy, not inside a step
            model.optimizer.build(model.trainable_variables)
    train_step, test_step = _steps(model, strategy, loss, metric, class_weight)
    train = _distributed(strategy, sets.train)
    validation = _distributed(strategy, sets.validation) if sets.validation is not None else None
    callback_list = k.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=math.ceil(sets.n_train / sets.batch_size),
        model=model,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, epochs):
        if model.stop_training:  # EarlyStopping asked, as fit checks it
            break
        callback_list.on_epoch_begin(epoch)
        totals = _Totals()
        for i, batch in enumerate(train):
            callback_list.on_train_batch_begin(i)
            callback_list.on_train_batch_end(i, totals.add(train_step(batch)))
        # Keras' EpochIterator makes an iterator at the end of each epoch and another at the start of the
        # next (pipeline.iterators_per_epoch), so each epoch of fit uses up two of the shuffle's reshuffles; do
        # the same, so that a worker sees the batches one process would.
        iter(train)
        logs = totals.logs()
        if validation is not None:
            logs.update(
                {f"val_{name}": value for name, value in _evaluate(validation, test_step, callback_list).items()}
            )
        callback_list.on_epoch_end(epoch, logs)
    callback_list.on_train_end(logs)
