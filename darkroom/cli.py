"""The command table: argv -> Config -> run(cfg). Nothing else lives here; nothing imports this module.

    darkroom train classifier --preset fashion-mnist-cpu
    darkroom predict runs/classifier-... shoe.png
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from darkroom import config as config_io
from darkroom.errors import RanksFailed, UserError

# task -> package exposing CONFIG (a frozen dataclass), PRESETS (name -> dict of settings) and run(cfg)
TRAINERS = {
    "classifier": "darkroom.classifier",
    "gan": "darkroom.gan",
    "cyclegan": "darkroom.cyclegan",
}


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag or value in one line, without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see `{self.prog} --help`)")


def at_least(low: int):
    """An argparse type: an int >= low (argparse then says "argument --n: must be at least 1, not 0")."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value
    return parse


def output_file(path: str, flag: str, suffixes: tuple[str, ...] = ()) -> Path:
    """A file darkroom will write: not a folder, under a folder (or where one can be made), of a known kind."""
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    blocking = next((parent for parent in target.parents if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UserError(f"{flag} {path} cannot be written: {blocking} is a file, not a folder")
    if suffixes and target.suffix.lower() not in suffixes:
        raise UserError(f"{flag} {path} must end in {' or '.join(suffixes)}")
    return target


def output_folder(path: str, flag: str) -> Path:
    """A folder darkroom will write into: not an existing file, nor under one."""
    target = Path(path)
    blocking = next((p for p in (target, *target.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UserError(f"{flag} {path} cannot be a folder: {blocking} is a file")
    return target


def trainer_module(task: str):
    return importlib.import_module(TRAINERS[task])


def add_train(commands: argparse._SubParsersAction, argv: list[str]) -> None:
    train = commands.add_parser("train", help="train a classifier, a GAN or a CycleGAN")
    tasks = train.add_subparsers(dest="task", required=True, parser_class=Parser)
    wanted = argv[1] if len(argv) > 1 and argv[0] == "train" else None
    for task in TRAINERS:
        sub = tasks.add_parser(task, help=f"train a {task}")
        if task != wanted:  # import only the trainer being run: keeps start-up fast
            continue
        module = trainer_module(task)
        sub.add_argument("--preset", choices=tuple(module.PRESETS), help="named settings; flags override them")
        sub.add_argument("--config", help="TOML file of settings; flags override it")
        config_io.add_arguments(sub, module.CONFIG)
    train.set_defaults(handler=run_train)


def given_settings(config_class: type, args: argparse.Namespace) -> dict:
    """The config fields among the parsed flags (argparse leaves out the flags not given)."""
    names = set(config_class.__dataclass_fields__)
    return {key: value for key, value in vars(args).items() if key in names}


def run_train(args: argparse.Namespace) -> int:
    module = trainer_module(args.task)
    given = given_settings(module.CONFIG, args)
    preset, presets = args.preset, module.PRESETS
    if preset is None and hasattr(module, "default_preset"):  # a default that depends on the data (CycleGAN's size)
        toml = config_io.read_toml(module.CONFIG, Path(args.config)) if args.config else {}
        chosen = module.default_preset({**toml, **given})
        if chosen is not None:
            preset, sized, sentence = chosen
            presets = {**presets, preset: {**presets[preset], **sized}}
            print(sentence)  # stdout, with the trainers' other banners: stderr holds only a bad input's one sentence
    module.run(config_io.layered(module.CONFIG, presets, preset, args.config, given))
    return 0


def add_use_commands(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a run")
    evaluate.set_defaults(handler=run_eval)
    kinds = evaluate.add_subparsers(dest="kind", required=True, parser_class=Parser)
    classifier = kinds.add_parser("classifier", help="test accuracy, loss and per-class accuracy of a classifier run")
    classifier.add_argument("run", help="classifier run folder")
    classifier.add_argument("--data-root", help="where the run's data lives, if not where it was trained")
    classifier.add_argument("--device", default="auto")
    classifier.add_argument("--json", help="also write the numbers to this JSON file")

    for kind, text in (("gan", "n samples of a GAN run vs held-out real images (--real, else its data's test split)"),
                       ("cyclegan", "held-out translations of a CycleGAN run")):
        sub = kinds.add_parser(kind, help=text)
        sub.add_argument("run", help=f"{kind} run folder")
        if kind == "gan":
            sub.add_argument("--n", type=at_least(2), default=10000, help="samples to draw (compare runs only at equal n)")
            sub.add_argument("--real", help="held-out real images: a folder, a .csv list or dataset:split "
                             "(fashion-mnist:test); default: the run's data's test split, and for data without one "
                             "(a folder, a CSV, an lmdb) the training images, without memorization scores and floor")
        add_judge_flags(sub)
    images = kinds.add_parser("images", help="any folder of generated images vs real images")
    images.add_argument("--fake", required=True, help="folder of generated images")
    images.add_argument("--real", required=True, help="held-out real images: a folder or dataset:split (fashion-mnist:test)")
    images.add_argument("--train", help="the real images the model learned from (for memorization and the floor)")
    images.add_argument("--n", type=at_least(2), default=None, help="use the first n fake images")
    images.add_argument("--json", default="eval.json", help="where to write the numbers")
    add_judge_flags(images)
    compare = kinds.add_parser("compare", help="which score differences between evaluated runs lie beyond their "
                               "95%% intervals")
    compare.add_argument("runs", nargs="+", help="two or more run folders (or eval.json files) darkroom eval has scored")

    predict = commands.add_parser("predict", help="top-k classes for image files of any size and mode")
    predict.set_defaults(handler=run_predict)
    predict.add_argument("run", help="classifier run folder")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--top-k", type=at_least(1), default=3)
    predict.add_argument("--device", default="auto")

    finder = commands.add_parser("lr-find", help="exponential learning-rate sweep; saves a plot")
    finder.set_defaults(handler=run_lr_find)
    finder.add_argument("--preset", default="fashion-mnist-cpu")
    finder.add_argument("--data", default=None)
    finder.add_argument("--arch", default=None)
    finder.add_argument("--start", type=float, default=1e-4)
    finder.add_argument("--end", type=float, default=10.0)
    finder.add_argument("--steps", type=at_least(5), default=100)
    finder.add_argument("--out", default="lr-find.png")
    finder.add_argument("--device", default="auto")


def add_judge_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", help="classifier run whose penultimate layer and classes judge the images "
                        "(default: the built-in Fashion-MNIST one, trained once and cached)")
    parser.add_argument("--inception-weights", help="FID Inception-v3 weights file (pt_inception-2015-12-05); "
                        "'cache' looks in torch's hub cache; omit to use the domain features")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")


def run_eval(args: argparse.Namespace) -> int:
    if args.kind == "compare":
        from darkroom.evaluate.commands import compare_runs

        for line in compare_runs(args.runs):
            print(line)
        return 0
    from darkroom.dist import pick_device
    from darkroom.classifier import evaluate_run

    if args.kind != "classifier":
        from darkroom.evaluate import commands as evaluate

        device = pick_device(args.device)
        if args.kind == "images":
            output_file(args.json, "--json", (".json",))
            evaluate.eval_images(args.fake, args.real, args.train, args.features, args.inception_weights, args.n,
                                 args.seed, Path(args.json), device)
            return 0
        if not Path(args.run).is_dir():
            raise UserError(f"run folder {args.run} does not exist")
        if args.kind == "gan":
            evaluate.eval_gan(args.run, args.n, args.features, args.inception_weights, args.seed, device, args.real)
        else:
            evaluate.eval_cyclegan(args.run, args.features, args.inception_weights, args.seed, device)
        return 0

    if args.json:
        output_file(args.json, "--json")
    if not Path(args.run).exists():
        raise UserError(f"run folder {args.run} does not exist")
    result = evaluate_run(args.run, pick_device(args.device), args.data_root)
    for key, value in result.items():
        print(f"{key:24s} {value:.4f}" if isinstance(value, float) else f"{key:24s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from darkroom.dist import pick_device
    from darkroom.classifier import predict_files

    for path in args.images:
        if Path(path).is_dir():
            raise UserError(f"{path} is a folder; give image files (e.g. {path}/*.png)")
        if not Path(path).is_file():
            raise UserError(f"image file {path} does not exist")
    for path, top in zip(args.images, predict_files(args.run, args.images, args.top_k, pick_device(args.device))):
        print(path + "  " + "  ".join(f"{name} {probability:.3f}" for name, probability in top))
    return 0


def run_lr_find(args: argparse.Namespace) -> int:
    from darkroom import classifier

    if args.preset not in classifier.PRESETS:
        raise UserError(f"--preset {args.preset} is not a classifier preset: use one of {', '.join(classifier.PRESETS)}")
    output_file(args.out, "--out", (".png", ".svg", ".pdf"))
    overrides = {key: value for key, value in (("data", args.data), ("arch", args.arch), ("device", args.device)) if value}
    cfg = config_io.layered(classifier.CONFIG, classifier.PRESETS, args.preset, None, overrides)
    result = classifier.lr_find(cfg, args.start, args.end, args.steps, Path(args.out))
    print(f"suggested learning rate {result['suggested_lr']:.3g} (steepest descent); plot {args.out}")
    return 0


def add_sample(commands: argparse._SubParsersAction) -> None:
    sample = commands.add_parser("sample", help="a grid of samples (or an interpolation strip) from a GAN run")
    sample.set_defaults(handler=run_sample)
    sample.add_argument("run", help="gan run folder")
    sample.add_argument("--n", type=int, default=64, help="number of samples in the grid")
    sample.add_argument("--out", default="grid.png", help="PNG file to write")
    sample.add_argument("--seed", type=int, default=0, help="noise seed")
    sample.add_argument("--truncate", type=float, default=None, help="truncation trick: redraw noise with |z| above this")
    sample.add_argument("--interpolate", action="store_true", help="an interpolation strip between noise vectors instead")
    sample.add_argument("--steps", type=int, default=10, help="interpolation steps")
    sample.add_argument("--device", default="auto")


def run_sample(args: argparse.Namespace) -> int:
    from darkroom.dist import pick_device
    from darkroom.gan import interpolation_strip, sample_grid

    output_file(args.out, "--out", (".png",))
    if not Path(args.run).is_dir():
        raise UserError(f"run folder {args.run} does not exist")
    device = pick_device(args.device)
    if args.interpolate:
        path = interpolation_strip(args.run, args.out, args.steps, args.seed, device)
    else:
        path = sample_grid(args.run, args.n, args.out, args.seed, args.truncate, device)
    print(f"wrote {path}")
    return 0


def add_translate(commands: argparse._SubParsersAction) -> None:
    translate = commands.add_parser("translate", help="translate a folder of images (any size) with a CycleGAN run")
    translate.set_defaults(handler=run_translate)
    translate.add_argument("run", help="cyclegan run folder")
    translate.add_argument("input_dir", help="folder of images to translate (searched recursively)")
    translate.add_argument("output_dir", help="where the translations go, with the same relative paths and names")
    translate.add_argument("--direction", choices=("a2b", "b2a"), default="a2b")
    translate.add_argument("--batch-size", type=at_least(1), default=1)
    translate.add_argument("--on-bad-image", choices=("fail", "skip"), default="fail",
                           help="an unreadable file: stop naming it, or skip it and list it at the end")
    translate.add_argument("--device", default="auto")


def run_translate(args: argparse.Namespace) -> int:
    from darkroom.dist import pick_device
    from darkroom.cyclegan import translate_folder

    output_folder(args.output_dir, "output folder")
    if not Path(args.run).exists():
        raise UserError(f"run folder {args.run} does not exist")
    result = translate_folder(args.run, args.direction, args.input_dir, args.output_dir, pick_device(args.device),
                              args.batch_size, on_bad_image=args.on_bad_image)
    for sentence in result["skipped"]:
        print(f"skipped: {sentence}")
    skipped = f", skipped {len(result['skipped'])}" if result["skipped"] else ""
    print(f"translated {result['translated']} images {args.direction} into {result['output_dir']}{skipped}")
    return 0


def add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="(re)build report.html of a run, or index.html of a folder of runs")
    report.set_defaults(handler=run_report)
    report.add_argument("path", help="a run folder, or a folder holding run folders")


def run_report(args: argparse.Namespace) -> int:
    from darkroom.report.html import build_index, build_report

    path = Path(args.path)
    if (path / "config.json").is_file():
        print(f"report: {build_report(path)}")
    elif path.is_dir():
        if not any(path.glob("*/config.json")) and not any(path.glob("*/*/config.json")):
            raise UserError(f"{path} holds no run folders (folders with a config.json, one or two levels down)")
        print(f"index: {build_index(path)}")
    else:
        raise UserError(f"{path} is neither a run folder nor a folder of runs")
    return 0


def add_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="the main job on Fashion-MNIST at a CPU-sized budget")
    demo.set_defaults(handler=run_demo)
    demo.add_argument("--quick", action="store_true", help="a first look in a fraction of the time")
    demo.add_argument("--out", default=None, help="demo folder (default runs/demo-<time>)")


def run_demo(args: argparse.Namespace) -> int:
    from darkroom.demo import run_demo as demo
    from darkroom.runs import default_run_dir

    demo(output_folder(args.out, "--out") if args.out else default_run_dir("demo"), args.quick)
    return 0


def build_parser(argv: list[str]) -> Parser:
    parser = Parser(prog="darkroom", description="Fast classifiers, Wasserstein GANs, CycleGAN and honest evaluation.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_train(commands, argv)
    add_use_commands(commands)
    add_demo(commands)
    add_report(commands)
    add_translate(commands)
    add_sample(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
        return args.handler(args)
    except UserError as error:
        print(f"darkroom: error: {error}", file=sys.stderr)
        return 2
    except RanksFailed as failure:  # a --processes rank failed and said why itself
        return failure.code
    except KeyboardInterrupt:
        print("darkroom: interrupted; the last checkpoint is intact (continue with --resume)", file=sys.stderr)
        return 130
