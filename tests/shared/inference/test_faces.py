import io
import uuid
from importlib.resources import files
from pathlib import Path

import pytest
from PIL import Image

from shared.inference.base import PermanentError, PostProcessorConfig
from shared.inference.faces import FaceDetector
from tests.shared.factories import item_input

# Photos that ship in scikit-image's wheel (a test dependency).
SAMPLES = files("skimage") / "data"
ASTRONAUT_FACE = {"x": 177, "y": 66, "width": 95, "height": 95}
CONFIG = PostProcessorConfig(id=uuid.uuid4(), name="faces", model_type="detection")


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def image_item(media_type="image/png"):
    return item_input(name="photo", extension="png", media_type=media_type)


def sample(name, tmp_path):
    path = tmp_path / name
    path.write_bytes((SAMPLES / name).read_bytes())
    return path


def test_finds_the_astronauts_face_as_a_box_in_pixels(detector, tmp_path):
    output = detector.run(image_item(), sample("astronaut.png", tmp_path), CONFIG)

    [face] = output.predictions
    assert face.label == "face"
    assert face.coordinates == ASTRONAUT_FACE
    assert all(type(value) is int for value in face.coordinates.values())
    assert 0.9 < face.score <= 1
    assert output.raw["model"] == "opencv-haar-frontalface"
    assert output.raw["image"] == {"width": 512, "height": 512}
    [box] = output.raw["boxes"]
    assert {key: box[key] for key in ASTRONAUT_FACE} == ASTRONAUT_FACE
    assert box["score"] == face.score
    # A detector has no text to write into the item.
    assert output.text is None


@pytest.mark.parametrize("name", ["coffee.png", "chelsea.png"])
def test_a_photo_without_a_face_gives_no_predictions(detector, tmp_path, name):
    output = detector.run(image_item(), sample(name, tmp_path), CONFIG)

    assert output.predictions == []
    assert output.raw["boxes"] == []


def test_a_blank_image_gives_no_predictions(detector, tmp_path):
    path = tmp_path / "blank.jpg"
    Image.new("RGB", (640, 480), "white").save(path)

    assert detector.run(image_item("image/jpeg"), path, CONFIG).predictions == []


def test_boxes_are_given_in_the_orientation_the_exif_tag_asks_for(detector, tmp_path):
    # Stored on its side, as a phone camera does, with the tag that says how
    # to turn it upright: the face is found, and placed where it is seen.
    upright = Image.open(SAMPLES / "astronaut.png")
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    path = tmp_path / "sideways.png"
    stored.save(path, exif=exif)

    output = detector.run(image_item(), path, CONFIG)

    assert [face.coordinates for face in output.predictions] == [ASTRONAUT_FACE]


def test_a_file_that_is_not_an_image_is_refused(detector, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("no faces here")

    with pytest.raises(PermanentError, match="reads images"):
        detector.run(image_item("text/plain"), path, CONFIG)


def test_an_item_without_a_file_is_refused(detector):
    with pytest.raises(PermanentError, match="no file"):
        detector.run(image_item(), None, CONFIG)


@pytest.mark.parametrize(
    "content",
    [b"\x89PNG\r\n\x1a\n" + b"\0" * 100, b"not an image at all"],
    ids=["broken-png", "garbage"],
)
def test_a_corrupt_image_is_refused(detector, tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)

    with pytest.raises(PermanentError, match="cannot be read"):
        detector.run(image_item(), path, CONFIG)


def test_a_truncated_image_is_refused(detector, tmp_path):
    whole = io.BytesIO()
    Image.open(SAMPLES / "astronaut.png").save(whole, "PNG")
    path = tmp_path / "truncated.png"
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])

    with pytest.raises(PermanentError, match="cannot be read"):
        detector.run(image_item(), path, CONFIG)


# Pillow refuses more than twice MAX_IMAGE_PIXELS and only warns between the
# limit and twice it; the detector refuses both, before decoding a pixel. The
# warning is ignored here as it is in a worker, where it is no error.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(40, 40), (100, 100)], ids=["over-the-limit", "over-twice"])
def test_a_decompression_bomb_is_refused(detector, tmp_path, monkeypatch, size):
    path: Path = tmp_path / "bomb.png"
    Image.new("L", size).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)

    with pytest.raises(PermanentError, match="too large"):
        detector.run(image_item(), path, CONFIG)
