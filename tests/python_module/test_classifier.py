"""qkv.Classifier against `qkv classify` on the same model and images, files or arrays."""
import pathlib

import numpy as np
import pytest

import qkv
from conftest import write_png


@pytest.fixture(scope="module")
def classifier(models):
    return qkv.Classifier(models / "vit")  # a pathlib.Path


@pytest.fixture(scope="module")
def images():
    """Pixel arrays of every layout: the model's 8x8 RGB, a larger RGB (resized), gray as
    H x W and as H x W x 1, gray+alpha and RGBA."""
    rng = np.random.default_rng(5)
    shapes = [(8, 8, 3), (13, 10, 3), (8, 8), (9, 8, 1), (6, 11, 2), (9, 7, 4)]
    return [rng.integers(0, 256, size=s, dtype=np.uint8) for s in shapes]


@pytest.fixture(scope="module")
def png_paths(images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, pixels in enumerate(images):
        paths.append(str(folder / f"image{i}.png"))
        write_png(paths[-1], pixels)
    return paths


def command_top_k(run_qkv, models, paths, k):
    """The command's answer: per image, [(label, percent with 2 decimals)]."""
    out = run_qkv("classify", "--model-dir", models / "vit", "-k", k, *paths)
    answers = []
    for line in out.splitlines():
        if not line.startswith(" "):
            answers.append([])
        else:
            percent, label = line.split()
            answers[-1].append((label, percent.rstrip("%")))
    return answers


def rounded(results):
    return [[(label, f"{100 * p:.2f}") for label, p in top] for top in results]


def test_paths_equal_the_command(classifier, png_paths, run_qkv, models):
    results = classifier.classify(png_paths, top_k=2)
    assert rounded(results) == command_top_k(run_qkv, models, png_paths, 2)
    for top in results:
        assert len(top) == 2 and top[0][1] >= top[1][1]


def test_arrays_equal_their_pngs(classifier, images, png_paths):
    from_arrays = classifier.classify(images, top_k=3)
    assert from_arrays == classifier.classify(png_paths, top_k=3)
    # A random model still tells different images apart.
    assert len({tuple(top) for top in from_arrays}) > 1
    for top in from_arrays:
        assert sorted(label for label, _ in top) == ["bird", "cat", "dog"]
        assert sum(p for _, p in top) == pytest.approx(1, abs=1e-5)


def test_mixed_single_and_strided_inputs(classifier, images, png_paths):
    assert classifier.classify([png_paths[0], images[1]]) == classifier.classify(
        [images[0], png_paths[1]])
    assert classifier.classify(images[2]) == classifier.classify([images[2]])
    assert classifier.classify(pathlib.Path(png_paths[3])) == classifier.classify([png_paths[3]])
    # A transposed view is read by its indices, not its memory order.
    view = images[1].transpose(1, 0, 2)
    assert classifier.classify(view) == classifier.classify(np.ascontiguousarray(view))
    assert classifier.classify([]) == []
    assert classifier.classes == ["bird", "cat", "dog"]
    # top_k is clamped to [1, classes], as the command clamps -k.
    assert len(classifier.classify(images[0], top_k=10)[0]) == 3


def test_wrong_arrays_are_named(classifier):
    with pytest.raises(ValueError, match=r"image 0: an array of shape \(2, 3, 4, 5\)"):
        classifier.classify(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"image 1: an array of shape \(8, 8, 5\)"):
        classifier.classify([np.zeros((8, 8), np.uint8), np.zeros((8, 8, 5), np.uint8)])
    with pytest.raises(ValueError, match="an empty image"):
        classifier.classify(np.zeros((0, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="image 0: pixels must be a numpy uint8 array, not float64"):
        classifier.classify(np.zeros((8, 8, 3)))
    with pytest.raises(TypeError, match="image 1: expected a file path or a numpy uint8 array"):
        classifier.classify(["a.png", 3])
    with pytest.raises(TypeError, match="images must be a path, a numpy array or a list"):
        classifier.classify(3)


def test_bad_files_and_directories(classifier, models, tmp_path):
    missing = str(tmp_path / "missing.png")
    with pytest.raises(RuntimeError, match="missing.png"):
        classifier.classify([missing])
    with pytest.raises(RuntimeError, match="model-type is 'gpt', expected vit"):
        qkv.Classifier(str(models / "gpt"))
