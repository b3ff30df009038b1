"""Readers/writers of datasets.io: round trips and one-line errors naming the file."""
import numpy as np
import pytest

from datasets.io import (DatasetError, read_cam, read_flo, read_image, read_segmentation, write_cam, write_flo,
                         write_image, write_segmentation)


def assert_one_line_error(excinfo, path, *fragments):
    message = str(excinfo.value)
    assert '\n' not in message
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_flo_round_trip_keeps_values_and_layout(tmp_path):
    flow = np.random.default_rng(0).normal(size=(5, 7, 2)).astype(np.float32)
    write_flo(tmp_path / 'f.flo', flow)
    raw = (tmp_path / 'f.flo').read_bytes()
    assert np.frombuffer(raw[:4], '<f4')[0] == np.float32(202021.25)
    assert list(np.frombuffer(raw[4:12], '<i4')) == [7, 5]
    assert np.frombuffer(raw[12:20], '<f4').tolist() == flow[0, 0].tolist()
    np.testing.assert_array_equal(read_flo(tmp_path / 'f.flo'), flow)
    assert not [p for p in tmp_path.iterdir() if p.name != 'f.flo']


def test_truncated_flo(tmp_path):
    write_flo(tmp_path / 'f.flo', np.zeros((4, 6, 2), np.float32))
    path = tmp_path / 'f.flo'
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError) as excinfo:
        read_flo(path)
    assert_one_line_error(excinfo, path, 'truncated', '6x4')
    path.write_bytes(b'\x00' * 5)
    with pytest.raises(DatasetError) as excinfo:
        read_flo(path)
    assert_one_line_error(excinfo, path, 'truncated')


def test_flo_wrong_magic_and_trailing_bytes(tmp_path):
    path = tmp_path / 'f.flo'
    write_flo(path, np.zeros((2, 3, 2), np.float32))
    data = bytearray(path.read_bytes())
    path.write_bytes(b'PIEH'[::-1] + bytes(data[4:]))
    with pytest.raises(DatasetError) as excinfo:
        read_flo(path)
    assert_one_line_error(excinfo, path, 'magic')
    path.write_bytes(bytes(data) + b'\x00\x00\x00\x00')
    with pytest.raises(DatasetError) as excinfo:
        read_flo(path)
    assert_one_line_error(excinfo, path, 'trailing')


def test_missing_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError) as excinfo:
        read_flo(tmp_path / 'none.flo')
    assert_one_line_error(excinfo, tmp_path / 'none.flo', 'not found')


def test_segmentation_round_trip_and_checks(tmp_path):
    masks = np.zeros((2, 4, 5), bool)
    masks[0, :2, :2] = True
    masks[1, 3, 4] = True
    path = tmp_path / 's.npy'
    write_segmentation(path, masks)
    seg = read_segmentation(path, expected_hw=(4, 5))
    assert seg.shape == (3, 4, 5) and not seg[0].any()
    np.testing.assert_array_equal(seg[1:] != 0, masks)
    with pytest.raises(DatasetError) as excinfo:
        read_segmentation(path, expected_hw=(4, 6))
    assert_one_line_error(excinfo, path, '4x5', '4x6')


@pytest.mark.parametrize('array, fragment', [
    (np.zeros((4, 5), np.uint8), '[1+N,H,W]'),
    (np.ones((2, 4, 5), np.uint8), 'channel 0'),
])
def test_bad_segmentation(tmp_path, array, fragment):
    path = tmp_path / 's.npy'
    np.save(path, array)
    with pytest.raises(DatasetError) as excinfo:
        read_segmentation(path)
    assert_one_line_error(excinfo, path, fragment)


def test_unreadable_segmentation(tmp_path):
    path = tmp_path / 's.npy'
    path.write_bytes(b'not numpy')
    with pytest.raises(DatasetError) as excinfo:
        read_segmentation(path)
    assert_one_line_error(excinfo, path, 'not a readable')


def test_cam_round_trip_and_single_line_layout(tmp_path):
    K = np.array([[100.5, 0, 47.5], [0, 101, 31.5], [0, 0, 1]])
    write_cam(tmp_path / 'cam.txt', K)
    np.testing.assert_allclose(read_cam(tmp_path / 'cam.txt'), K)
    (tmp_path / 'one_line.txt').write_text(' '.join(str(v) for v in K.ravel()))
    np.testing.assert_allclose(read_cam(tmp_path / 'one_line.txt'), K)


@pytest.mark.parametrize('text, fragment', [('1 0 0\n0 1 0\n', 'found 6'), ('1 0 0\n0 a 0\n0 0 1\n', 'non-numeric')])
def test_bad_cam(tmp_path, text, fragment):
    path = tmp_path / 'cam.txt'
    path.write_text(text)
    with pytest.raises(DatasetError) as excinfo:
        read_cam(path)
    assert_one_line_error(excinfo, path, fragment)


def test_missing_cam(tmp_path):
    with pytest.raises(DatasetError) as excinfo:
        read_cam(tmp_path / 'cam.txt')
    assert_one_line_error(excinfo, tmp_path / 'cam.txt', 'not found')


def test_png_round_trip_is_exact_and_rgb(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    write_image(tmp_path / 'f.png', image)
    np.testing.assert_array_equal(read_image(tmp_path / 'f.png'), image)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    write_image(tmp_path / 'r.jpg', red)
    assert read_image(tmp_path / 'r.jpg')[..., 0].min() > 240


@pytest.mark.parametrize('content, fragment', [(b'garbage', 'cannot decode'), (b'', 'empty file')])
def test_undecodable_or_empty_image(tmp_path, content, fragment):
    path = tmp_path / 'f.jpg'
    path.write_bytes(content)
    with pytest.raises(DatasetError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, path, fragment)


def test_non_numeric_segmentation(tmp_path):
    path = tmp_path / 's.npy'
    np.save(path, np.full((2, 4, 6), 'x'))
    with pytest.raises(DatasetError) as excinfo:
        read_segmentation(path, (4, 6))
    assert_one_line_error(excinfo, path, 'numeric or bool array', '<U1')
