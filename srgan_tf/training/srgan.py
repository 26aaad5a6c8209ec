"""SRGAN as a `keras.Model`: generator pretraining (MSE) and adversarial training (Ledig et al.).

`fit()` drives it: `train_step` runs the current `phase`; switching phase drops the traced
train function so the next `fit()` traces the other graph.

Example:
    model = SRGAN(generator, discriminator, extractor, config.loss)
    model.compile(g_optimizer=keras.optimizers.Adam(1e-4, beta_1=0.9),
                  d_optimizer=keras.optimizers.Adam(1e-4, beta_1=0.9))
    model.phase = "pretrain"
    model.fit(dataset, epochs=20, steps_per_epoch=500)
    model.phase = "adversarial"
    model.fit(dataset, initial_epoch=20, epochs=70, steps_per_epoch=500)
"""
import keras
import tensorflow as tf

from srgan_tf.config import LossConfig
from srgan_tf.models.vgg import content_loss_fn
from srgan_tf.training.strategy import worker_count

PHASES = ("pretrain", "adversarial")
TRACKER_NAMES = ("g_loss", "d_loss", "content_loss", "adversarial_loss", "pixel_mse", "psnr",
                 "d_real_logit", "d_fake_logit", "d_real_accuracy", "d_fake_accuracy")
PHASE_LOGS = {
    "pretrain": ("g_loss", "pixel_mse", "psnr"),
    "adversarial": TRACKER_NAMES,
}


class SRGAN(keras.Model):
    """Generator + discriminator + frozen content extractor, trained in two phases.

    Args:
        generator: LR [B, h, w, 1] -> SR [B, h*sh, w*sw, 1] in [-1, 1].
        discriminator: HR-sized image -> [B, 1] logit.
        content_extractor: frozen feature model for the content loss, or None for pixel MSE
            (SRGAN-MSE). Must be None exactly when `loss_config.content_loss == "mse"`.
        loss_config: `LossConfig` (adversarial_weight, pixel_weight, relativistic, ema_decay).
    """

    def __init__(self, generator, discriminator, content_extractor=None, loss_config=None,
                 name="srgan", **kwargs):
        super().__init__(name=name, **kwargs)
        loss_config = loss_config or LossConfig()
        if (content_extractor is None) != (loss_config.content_loss == "mse"):
            raise ValueError(
                "content_extractor must be None exactly when content_loss is 'mse'. Received: "
                f"content_loss={loss_config.content_loss!r}, content_extractor={content_extractor!r}")
        if not 0.0 <= loss_config.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1). Received: ema_decay={loss_config.ema_decay}")
        self.generator = generator
        self.discriminator = discriminator
        self.content_extractor = content_extractor
        self.loss_config = loss_config
        # models/vgg.py owns the content loss (VGG feature MSE / 12.75**2, or pixel MSE).
        self.content_loss = content_loss_fn(loss_config.content_loss, content_extractor)
        self._phase = "pretrain"
        self.trackers = {key: keras.metrics.Mean(name=key) for key in TRACKER_NAMES}
        self._multi_worker = worker_count(tf.distribute.get_strategy()) > 1  # built in its scope
        # Replicas update the EMA identically; the first one's write is kept.
        self.ema_weights = [
            keras.Variable(weight.numpy(), trainable=False, dtype=weight.dtype,
                           aggregation="only_first_replica", name=f"ema_{i}")
            for i, weight in enumerate(generator.weights)
        ] if loss_config.ema_decay > 0 else []

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        """Sets both optimizers (built now, so checkpoints can restore their state).

        Args:
            g_optimizer: generator optimizer (Adam lr 1e-4, beta_1 0.9 in the paper).
            d_optimizer: discriminator optimizer.
            **kwargs: passed to `keras.Model.compile` (jit_compile, steps_per_execution, ...).
        """
        super().compile(optimizer=None, **kwargs)  # Keras' own optimizer slot stays empty
        if _compute_dtype(self.generator) == "float16":  # bfloat16 needs no loss scaling
            g_optimizer = _loss_scaled(g_optimizer)
            d_optimizer = _loss_scaled(d_optimizer)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.built = True  # both networks are built functional models: nothing left to infer

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds a model before fit/evaluate by averaging its first distributed batch
        # with strategy.reduce, which MultiWorkerMirroredStrategy cannot do for an (lr, hr)
        # tuple (keras-team/keras#20585). This model is built in compile(), so skip it.
        if not self.built:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, value: str):
        if value not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}. Received: phase={value!r}")
        if value != self._phase:
            self.train_function = None  # the phase is baked into the traced graph
        self._phase = value

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def train_step(self, data):
        lr, hr, _ = keras.utils.unpack_x_y_sample_weight(data)
        hr = tf.cast(hr, tf.float32)
        if self._phase == "pretrain":
            self._pretrain_step(lr, hr)
        else:
            self._adversarial_step(lr, hr)
        self._update_ema()
        return self._logs(PHASE_LOGS[self._phase])

    def _pretrain_step(self, lr, hr):
        """Generator alone on a pixel loss (paper: MSE, 20 epochs before the discriminator joins)."""
        generator = self.generator
        with tf.GradientTape() as tape:
            sr = tf.cast(generator(lr, training=True), tf.float32)
            pixel_mse = tf.reduce_mean(tf.square(hr - sr))
            loss = pixel_loss(self.loss_config.pixel_loss, hr, sr, pixel_mse)
            scaled = self.g_optimizer.scale_loss(_per_replica(loss))
        gradients = tape.gradient(scaled, generator.trainable_variables)
        self.g_optimizer.apply(gradients, generator.trainable_variables)
        self._track(g_loss=loss, pixel_mse=pixel_mse, psnr=_mean_psnr(hr, sr))

    def _adversarial_step(self, lr, hr):
        """One forward pass feeds both updates (simultaneous GAN step): D first, then G."""
        generator, discriminator = self.generator, self.discriminator
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            sr = tf.cast(generator(lr, training=True), tf.float32)
            real_logits = tf.cast(discriminator(hr, training=True), tf.float32)
            fake_logits = tf.cast(discriminator(sr, training=True), tf.float32)
            d_loss = self._discriminator_loss(real_logits, fake_logits)
            content_loss = self.content_loss(hr, sr)
            adversarial_loss = self._generator_adversarial_loss(real_logits, fake_logits)
            pixel_mse = tf.reduce_mean(tf.square(hr - sr))
            g_loss = (content_loss + self.loss_config.adversarial_weight * adversarial_loss
                      + self.loss_config.pixel_weight * pixel_mse)
            d_scaled = self.d_optimizer.scale_loss(_per_replica(d_loss))
            g_scaled = self.g_optimizer.scale_loss(_per_replica(g_loss))

        # Discriminator update: real HR -> 1, generated SR -> 0.
        d_gradients = d_tape.gradient(d_scaled, discriminator.trainable_variables)
        self.d_optimizer.apply(d_gradients, discriminator.trainable_variables)

        # Generator update: content + adversarial_weight * adversarial (+ pixel_weight * MSE).
        g_gradients = g_tape.gradient(g_scaled, generator.trainable_variables)
        self.g_optimizer.apply(g_gradients, generator.trainable_variables)

        self._track(
            g_loss=g_loss, d_loss=d_loss, content_loss=content_loss,
            adversarial_loss=adversarial_loss, pixel_mse=pixel_mse, psnr=_mean_psnr(hr, sr),
            d_real_logit=tf.reduce_mean(real_logits), d_fake_logit=tf.reduce_mean(fake_logits),
            d_real_accuracy=tf.reduce_mean(tf.cast(real_logits > 0, tf.float32)),
            d_fake_accuracy=tf.reduce_mean(tf.cast(fake_logits < 0, tf.float32)))

    def test_step(self, data):
        lr, hr, _ = keras.utils.unpack_x_y_sample_weight(data)
        hr = tf.cast(hr, tf.float32)
        sr = tf.cast(self.generator(lr, training=False), tf.float32)
        pixel_mse = tf.reduce_mean(tf.square(hr - sr))
        values = {"pixel_mse": pixel_mse, "psnr": _mean_psnr(hr, sr)}
        if self.content_extractor is not None:
            values["content_loss"] = self.content_loss(hr, sr)
        self._track(**values)
        return self._logs(values)

    def _logs(self, keys):
        """Tracker results (already global means: the trackers sum over replicas). Keras
        averages multi-worker step outputs with strategy.reduce(..., axis=0), which needs a
        batch axis (Keras 3.15, keras-team/keras#20585): there, each scalar gets one."""
        logs = {key: self.trackers[key].result() for key in keys}
        if self._multi_worker:
            logs = {key: tf.reshape(value, [1]) for key, value in logs.items()}
        return logs

    def _discriminator_loss(self, real_logits, fake_logits):
        if self.loss_config.relativistic:  # ESRGAN: "more realistic than the average fake"
            real_logits, fake_logits = (real_logits - tf.reduce_mean(fake_logits),
                                        fake_logits - tf.reduce_mean(real_logits))
        return _bce(1.0, real_logits) + _bce(0.0, fake_logits)

    def _generator_adversarial_loss(self, real_logits, fake_logits):
        if self.loss_config.relativistic:
            return (_bce(0.0, real_logits - tf.reduce_mean(fake_logits))
                    + _bce(1.0, fake_logits - tf.reduce_mean(real_logits)))
        return _bce(1.0, fake_logits)

    def _track(self, **values):
        for key, value in values.items():
            self.trackers[key].update_state(value)

    def _update_ema(self):
        decay = self.loss_config.ema_decay
        for average, weight in zip(self.ema_weights, self.generator.weights):
            average.assign(decay * average + (1.0 - decay) * weight)

    def generator_for_export(self, dtype="float32") -> keras.Model:
        """A float32 copy of the generator holding the EMA weights when enabled (else the live ones)."""
        weights = ([w.numpy() for w in self.ema_weights] if self.ema_weights
                   else [w.numpy() for w in self.generator.weights])
        return clone_model_with(self.generator, weights=weights, dtype=dtype, synchronized_bn=False)


def clone_model_with(model, *, weights=None, dtype=None, synchronized_bn=None) -> keras.Model:
    """Rebuilds a functional model with layer overrides, e.g. float32 or synchronised batch norm.

    Args:
        model: functional Keras model (layers serialisable through get_config).
        weights: list of arrays for `set_weights`; default the model's own weights.
        dtype: dtype policy name for every layer (e.g. "float32" for export), None keeps each.
        synchronized_bn: set `synchronized` on every BatchNormalization (TF backend:
            batch statistics all-reduced across replicas), None keeps each.
    """
    def clone_layer(layer):
        config = layer.get_config()
        if dtype is not None:
            config["dtype"] = dtype
        if synchronized_bn is not None and isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = synchronized_bn
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(weights if weights is not None else model.get_weights())
    return clone


CHARBONNIER_EPSILON = 1e-3  # images span [-1, 1]: well below one grey level of 8-bit data


def pixel_loss(name: str, hr, sr, mse=None):
    """The pretraining loss `name` ("mse", "l1", "charbonnier") of sr against hr, float32."""
    if name == "mse":
        return tf.reduce_mean(tf.square(hr - sr)) if mse is None else mse
    if name == "l1":
        return tf.reduce_mean(tf.abs(hr - sr))
    if name == "charbonnier":
        return tf.reduce_mean(tf.sqrt(tf.square(hr - sr) + CHARBONNIER_EPSILON ** 2))
    raise ValueError(f"pixel loss must be mse, l1 or charbonnier. Received: {name!r}")


def _mean_psnr(hr, sr):
    # Images in [-1, 1]: the data range is 2. Mean over the batch's images, as the trackers log.
    return tf.reduce_mean(tf.image.psnr(hr, sr, max_val=2.0))


def _bce(label, logits):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.fill(tf.shape(logits), label), logits=logits))


def _per_replica(loss):
    # Gradients are summed over replicas, so each replica contributes mean / replicas.
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    return loss / tf.cast(replicas, loss.dtype) if replicas > 1 else loss


def _compute_dtype(model) -> str:
    policy = getattr(model, "dtype_policy", None)
    return getattr(policy, "compute_dtype", "float32")


def _loss_scaled(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)
