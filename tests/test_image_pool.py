"""Image history pool: fills first, then swaps half of the time; state is checkpointed."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from ctdenoise.trainer_module.image_pool import ImagePool

SHAPE = [2, 2, 1]


def batch(*values: float) -> tf.Tensor:
    """One constant 2x2 image per value, so an image is identified by its value."""
    return tf.constant([np.full(SHAPE, v, np.float32) for v in values])


def ids(images: tf.Tensor) -> list[float]:
    return images.numpy()[:, 0, 0, 0].tolist()


def test_fills_first_returning_the_new_images():
    pool = ImagePool(3, SHAPE, seed=0)
    assert ids(pool.query(batch(1, 2))) == [1, 2]
    assert int(pool.count) == 2
    assert ids(pool.query(batch(3))) == [3]
    assert sorted(ids(pool.images)) == [1, 2, 3]


def test_when_full_returns_new_or_stored_images_and_keeps_its_size():
    pool = ImagePool(4, SHAPE, seed=0)
    pool.query(batch(1, 2, 3, 4))
    seen_stored = seen_new = False
    for value in range(10, 40):
        before = set(ids(pool.images))
        (returned,) = ids(pool.query(batch(value)))
        after = ids(pool.images)
        assert int(pool.count) == 4 and len(after) == 4
        if returned == value:  # kept: the pool is unchanged
            seen_new = True
            assert set(after) == before
        else:  # swapped: a stored image came out and the new one took its place
            seen_stored = True
            assert returned in before and value in after and returned not in after
    assert seen_new and seen_stored


def test_disabled_pool_is_the_identity():
    for pool in (ImagePool(4, SHAPE, enabled=False), ImagePool(0, SHAPE)):
        images = batch(1, 2, 3)
        for _ in range(3):
            assert ids(pool.query(images)) == [1, 2, 3]


def test_same_seed_same_choices():
    def run(seed: int) -> list[float]:
        pool = ImagePool(2, SHAPE, seed=seed)
        return [v for step in range(12) for v in ids(pool.query(batch(2 * step, 2 * step + 1)))]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_works_inside_a_tf_function_and_restores_from_a_checkpoint(tmp_path):
    pool = ImagePool(3, SHAPE, seed=0)
    tf.function(pool.query)(batch(1, 2, 3, 4, 5))
    path = tf.train.Checkpoint(pool=pool).save(str(tmp_path / "pool"))

    restored = ImagePool(3, SHAPE, seed=99)
    tf.train.Checkpoint(pool=restored).restore(path).assert_consumed()
    assert int(restored.count) == 3
    assert ids(restored.images) == ids(pool.images)
    # The random stream is restored too, so both continue identically.
    assert ids(restored.query(batch(6, 7, 8))) == ids(pool.query(batch(6, 7, 8)))
