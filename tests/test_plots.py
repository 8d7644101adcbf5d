"""Figures: the image mosaic behind the gallery and the reconstructions."""

import numpy as np

from aeclust import plots


def test_mosaic_places_each_image_in_its_cell():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(6, 5, 4, 3), dtype=np.uint8)
    grid = [[4, 0, 2], [5]]  # The second row is shorter, so its other cells stay white.
    mosaic, cell = plots._mosaic(images, grid, gap=1)
    assert cell == (6, 5)
    assert mosaic.shape == (2 * 6, 3 * 5, 3)
    for row, indexes in enumerate(grid):
        for column, index in enumerate(indexes):
            top, left = row * 6, column * 5
            np.testing.assert_array_equal(mosaic[top:top + 5, left:left + 4], images[index])
    assert (mosaic[6:, 5:] == 255).all()


def test_gallery_of_47_clusters_has_one_image_axis():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(100, 28, 28, 1), dtype=np.uint8)
    groups = [rng.integers(0, 100, size=8) for _ in range(47)]
    titles = [f"{row}: class {row}" for row in range(47)]
    fig = plots.gallery_figure(images, groups, row_titles=titles, title="gallery")
    (ax,) = fig.axes
    assert [label.get_text() for label in ax.get_yticklabels()] == titles
    plots.plt.close(fig)


def test_reconstructions_rows_are_input_then_output():
    originals = np.zeros((3, 8, 8, 1), dtype=np.uint8)
    reconstructions = np.full((3, 8, 8, 1), 200, dtype=np.uint8)
    fig = plots.reconstructions_figure(originals, reconstructions, title="t")
    (ax,) = fig.axes
    assert [label.get_text() for label in ax.get_yticklabels()] == ["input", "output"]
    pixels = ax.get_images()[0].get_array()
    assert pixels[:8, :8].max() == 0
    assert pixels[10:18, :8].min() == 200
    plots.plt.close(fig)
