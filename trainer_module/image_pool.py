"""History of generated images feeding the discriminators (Shrivastava et al. 2017).

Showing a discriminator some older fakes as well as the newest ones damps the
oscillation between generator and discriminator. The original code built such a pool
but never used it; here it is used, and can be switched off.

The state lives in tf.Variables and the randomness in a tf.random.Generator, so that
`query` runs inside the compiled train step and the pool is saved in, and restored
from, the training checkpoint like any other state.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

SWAP_PROBABILITY = 0.5


class ImagePool(tf.Module):
    def __init__(
        self,
        size: int,
        image_shape: Sequence[int],
        enabled: bool = True,
        seed: int = 0,
        name: str = "image_pool",
    ):
        super().__init__(name=name)
        self.size = size
        self.enabled = enabled and size > 0
        # ON_READ with ONLY_FIRST_REPLICA: under a multi-replica strategy each replica
        # keeps its own history and a checkpoint holds the first replica's; under the
        # default strategy these are plain variables.
        local = dict(
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        self.images = tf.Variable(tf.zeros([size, *image_shape]), name="images", **local)
        self.count = tf.Variable(0, name="count", **local)
        self.rng = tf.random.Generator.from_seed(seed)

    def query(self, images: tf.Tensor) -> tf.Tensor:
        """Images for the discriminator in place of `images`, one by one: while the pool
        fills, each new image is stored and returned; once full, each is returned with
        probability 1/2, or else swapped for a random stored image, which it replaces."""
        if not self.enabled:
            return images
        return self._query(images)

    @tf.function
    def _query(self, images: tf.Tensor) -> tf.Tensor:
        images = tf.cast(images, self.images.dtype)
        chosen = tf.TensorArray(images.dtype, size=tf.shape(images)[0], element_shape=images.shape[1:])
        for i in tf.range(tf.shape(images)[0]):
            chosen = chosen.write(i, self._exchange(images[i]))
        return chosen.stack()

    def _exchange(self, image: tf.Tensor) -> tf.Tensor:
        if self.count < self.size:
            self._store(self.count, image)
            self.count.assign_add(1)
            result = image
        elif self.rng.uniform([]) < SWAP_PROBABILITY:
            index = self.rng.uniform([], 0, self.size, dtype=tf.int32)
            result = tf.gather(self.images, index)  # read before _store overwrites it
            self._store(index, image)
        else:
            result = image
        return result

    def _store(self, index: tf.Tensor, image: tf.Tensor) -> None:
        # Not `images[index].assign`: XLA needs static slice bounds. A whole-buffer
        # assign, as replica-local (ON_READ) variables have no scatter_update.
        self.images.assign(tf.tensor_scatter_nd_update(self.images, [[index]], image[tf.newaxis]))
