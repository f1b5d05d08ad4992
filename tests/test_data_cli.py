"""``minids data``: output, and one-line errors without a traceback."""

import pytest
from click.testing import CliRunner

from minids.cli.main import main
from data_files import random_split, write_svhn
from minids.data import fashion_mnist


@pytest.fixture
def invoke(monkeypatch, tmp_path):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("MINIDS_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIDS_MIRROR", raising=False)
    return lambda *args: CliRunner().invoke(main, ["data", *args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_info_mini(invoke):
    result = invoke("info", "fashion-mnist-mini")
    assert result.exit_code == 0
    assert "train:    10000 images of 1×28×28, per class [1000," in result.output
    assert "fashion_mnist_mini.npz" in result.output


def test_info_svhn_without_extra(invoke, tmp_path):
    for name, seed in (("train", 1), ("test", 2)):
        write_svhn(tmp_path / f"{name}_32x32.mat", *random_split(20, (3, 32, 32), seed))
    result = invoke("info", "svhn", "--no-extra", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "train:    20 images of 3×32×32, per class [2, 2," in result.output
    assert str(tmp_path / "prepared") in result.output


def test_missing_files(invoke, tmp_path):
    assert_one_line_error(invoke("info", "svhn", "--data-dir", str(tmp_path)),
                          "missing train_32x32.mat, test_32x32.mat, extra_32x32.mat", "minids data download svhn")


def test_corrupt_file(invoke, tmp_path):
    (tmp_path / "test_32x32.mat").write_bytes(b"garbage" * 100)
    (tmp_path / "train_32x32.mat").write_bytes(b"garbage" * 100)
    assert_one_line_error(invoke("info", "svhn", "--no-extra", "--data-dir", str(tmp_path)),
                          "train_32x32.mat is not a MATLAB .mat file")


def test_unknown_name(invoke):
    result = invoke("info", "mnist")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "'mnist' is not one of" in result.output


def test_download_offline_says_where(invoke, tmp_path):
    result = invoke("download", "cifar10", "--data-dir", str(tmp_path), "--mirror", "http://127.0.0.1:9")
    assert_one_line_error(result, "could not download http://127.0.0.1:9/cifar-10-python.tar.gz",
                          str(tmp_path / "cifar-10-python.tar.gz"))


def test_unwritable_data_dir(invoke, tmp_path):
    (tmp_path / "file").write_text("")
    assert_one_line_error(invoke("download", "svhn", "--data-dir", str(tmp_path / "file" / "d")), "is not writable")


def test_verify(invoke, tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"short")
    result = invoke("verify", "cifar10", "--data-dir", str(tmp_path))
    assert result.exit_code != 0
    assert "BAD" in result.output and "5 bytes, expected 170498071" in result.output
    assert "Error: 1 file(s) failed verification" in result.output
