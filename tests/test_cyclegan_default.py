"""The CycleGAN default follows the images: domains of images up to 64 px get the small-images preset (sized to the
images) when no --preset is given; larger or unknown ones keep the reference's settings; flags still win."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from darkroom import cli
from darkroom.cyclegan import PRESETS
from darkroom.cyclegan.config import SMALL_IMAGES, default_preset
from darkroom.cyclegan.data import native_side
from darkroom.errors import UserError

TINY = ["--ngf", "4", "--ndf", "4", "--d-layers", "2", "--workers", "0", "--quiet", "--val-images", "1",
        "--stop-after", "1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def write_images(folder: Path, count: int, size: tuple[int, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8), "L").save(folder / f"{index:03d}.png")
    return folder


def test_native_side_reads_builtin_sets_and_folder_headers(tmp_path):
    assert native_side("fashion-mnist:sneaker,ankle-boot", None, None) == 28
    assert native_side("cifar10:cat,dog", None, None) == 32
    a, b = write_images(tmp_path / "a", 3, (40, 30)), write_images(tmp_path / "b", 3, (50, 36))
    assert native_side("ignored", str(a), str(b)) == 36  # the larger domain's shorter side
    layout = tmp_path / "set"
    write_images(layout / "trainA", 2, (20, 24))
    write_images(layout / "trainB", 2, (22, 22))
    assert native_side(str(layout), None, None) == 22
    assert native_side("horse2zebra", None, None) is None  # not on disk: nothing to read without downloading
    assert native_side("https://example.com/x.zip", None, None) is None
    assert native_side("ignored", str(a), str(tmp_path / "missing")) is None


def test_default_preset_by_size(tmp_path):
    name, sized, sentence = default_preset({})  # the default data: Fashion-MNIST's 28 px
    assert name == "small-images" and name in PRESETS and sized == {"load_size": 28, "crop_size": 28, "d_layers": 2}
    assert "28 px" in sentence and "--preset reference" in sentence
    odd = write_images(tmp_path / "odd", 2, (30, 30))
    assert default_preset({"data_a": str(odd), "data_b": str(odd)})[1] == {"load_size": 30, "crop_size": 28,
                                                                          "d_layers": 2}
    big = write_images(tmp_path / "big", 2, (SMALL_IMAGES + 1, SMALL_IMAGES + 1))
    assert default_preset({"data_a": str(big), "data_b": str(odd)}) is None
    edge = write_images(tmp_path / "edge", 2, (SMALL_IMAGES, SMALL_IMAGES))
    assert default_preset({"data_a": str(edge), "data_b": str(edge)})[1]["crop_size"] == SMALL_IMAGES
    assert default_preset({"data_a": str(edge), "data_b": str(edge)})[1]["d_layers"] == 3  # 8 x 8 and 7 x 7 norms


def test_the_patch_discriminator_keeps_every_norm_map_at_least_4_px_and_fits_the_crop():
    """patch_layers picks the most stride-2 layers (<= 3) whose smallest instance-norm map is >= 4 x 4, measured on
    the built net's activations, and check_config accepts what it picks down to the smallest crop the default takes."""
    import torch
    from torch import nn
    from darkroom.cyclegan.config import CycleGANConfig, check_config, patch_layers, patch_sides
    from darkroom.nets.cyclegan import patchgan_discriminator

    def norm_sides(crop: int, layers: int) -> list[int]:
        net, sides = patchgan_discriminator(1, 4, layers), []
        for module in net.modules():
            if isinstance(module, nn.InstanceNorm2d):
                module.register_forward_hook(lambda m, i, o: sides.append(o.shape[-1]))
        try:
            net(torch.zeros(1, 1, crop, crop))
        except ValueError:  # instance norm refuses a 1 x 1 map
            sides.append(1)
        return sides

    assert [patch_layers(crop) for crop in (8, 12, 20, 28, 32, 36, 40, 64)] == [1, 1, 2, 2, 2, 2, 3, 3]
    for crop in (8, 12, 20, 28, 32, 40, 64):
        layers = patch_layers(crop)
        assert len(norm_sides(crop, layers)) == layers
        if crop >= 20:
            assert min(norm_sides(crop, layers)) >= 4, crop
            if layers < 3:  # one more stride-2 layer would leave a map under 4 x 4
                assert min(norm_sides(crop, layers + 1)) < 4, crop
        check_config(CycleGANConfig(load_size=crop, crop_size=crop, d_layers=layers), 1)
    for crop, layers in ((12, 1), (20, 2), (28, 2), (28, 3), (40, 3), (64, 3)):  # patch_sides is the built net's
        smallest_norm, logits = patch_sides(crop, layers)
        assert patchgan_discriminator(1, 4, layers)(torch.zeros(1, 1, crop, crop)).shape[-1] == logits
        assert min(norm_sides(crop, layers)) == smallest_norm, (crop, layers)
    with pytest.raises(UserError, match="--crop-size 12 is too small for a --d-layers 3 discriminator"):
        check_config(CycleGANConfig(load_size=12, crop_size=12, d_layers=3), 1)  # a 0 x 0 logit map


def train(args: list[str], capsys) -> tuple[dict, str]:
    out = Path(args[args.index("--out") + 1])
    code = cli.main(["train", "cyclegan", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""
    return json.loads((out / "config.json").read_text())["config"], captured.out


def test_two_folders_of_small_images_train_with_the_small_recipe_without_flags(tmp_path, capsys):
    # 20 images a domain: the recipe's batch of 16 and one held out
    a, b = write_images(tmp_path / "a", 20, (24, 24)), write_images(tmp_path / "b", 20, (24, 24))
    config, out = train(["--data-a", str(a), "--data-b", str(b), *TINY, "--out", str(tmp_path / "run")], capsys)
    recipe = PRESETS["small-images"]
    assert "small-images" in out and "24 px" in out
    assert (config["load_size"], config["crop_size"]) == (24, 24)
    for key in ("lambda_a", "lambda_b", "cycle_decoder", "identity", "lr", "batch_size", "blocks", "epochs",
                "epochs_decay", "input_norm", "padding", "cycle_target", "cycle_span", "cycle_span_down", "cycle_fall",
                "d_layers", "channels_last"):
        assert config[key] == recipe[key], key
    assert config["ngf"] == 4  # a flag beats the default
    flags, _ = train(["--data-a", str(a), "--data-b", str(b), *TINY, "--lambda-a", "3", "--crop-size", "20",
                      "--out", str(tmp_path / "flags")], capsys)
    assert flags["lambda_a"] == 3.0 and flags["crop_size"] == 20 and flags["load_size"] == 24


def test_an_explicit_preset_or_large_images_keep_their_settings(tmp_path, capsys):
    # 20 images a domain: the recipe's batch of 16 and one held out
    a, b = write_images(tmp_path / "a", 20, (24, 24)), write_images(tmp_path / "b", 20, (24, 24))
    config, out = train(["--data-a", str(a), "--data-b", str(b), "--preset", "reference", *TINY, "--load-size", "24",
                         "--crop-size", "24", "--out", str(tmp_path / "run")], capsys)
    assert "small-images" not in out
    assert config["lambda_a"] == 10.0 and config["blocks"] == 0 and config["generator"] == "resnet_9blocks"
    big_a, big_b = write_images(tmp_path / "ba", 3, (80, 72)), write_images(tmp_path / "bb", 3, (80, 72))
    config, out = train(["--data-a", str(big_a), "--data-b", str(big_b), *TINY, "--load-size", "72", "--crop-size", "64",
                         "--out", str(tmp_path / "big")], capsys)
    assert "small-images" not in out and config["lambda_a"] == 10.0 and config["batch_size"] == 1
