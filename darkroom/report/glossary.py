"""Readable names and one-line meanings for every key a run's metrics.jsonl or eval.json can carry.

    describe("translation_fid_a2b_floor").name  # 'translation FID, A→B: floor (real vs real)'
Suffixes are rules, not entries: _ci_low/_ci_high, _floor, _a2b/_b2a, _a/_b (CycleGAN domains), acc_<class>.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

FLOOR = ("the same metric between two real sets of this size (real train vs real test): what a perfect model "
         "would score here; the closer a score is to its floor, the better")


@dataclass(frozen=True)
class Term:
    name: str
    meaning: str
    score: bool = True  # a measured quality number; False: a setting, a count or a clock (listed apart)
    known: bool = True


def _score(name: str, meaning: str) -> tuple[str, str, bool]:
    return name, meaning, True


def _setting(name: str, meaning: str) -> tuple[str, str, bool]:
    return name, meaning, False


TERMS: dict[str, tuple[str, str, bool]] = {
    # eval gan / eval images (darkroom.metrics via darkroom.evaluate.score)
    "frechet_inception_distance": _score("FID", "Fréchet distance between Gaussian fits of sample and real features; "
                                         "lower is better"),
    "fd_infinity": _score("FID∞", "FID extrapolated to infinitely many samples, free of FID's sample-count bias "
                          "(Chong & Forsyth 2020); lower is better, may dip below 0 by noise"),
    "kernel_inception_distance_mean": _score("KID", "kernel (polynomial MMD²) distance between sample and real "
                                             "features, unbiased so it can be below 0; lower is better"),
    "kernel_inception_distance_std": _setting("KID spread over subsets", "standard deviation of KID over random "
                                              "subsets: the noise of the KID estimate, not a quality score"),
    "precision": _score("precision", "share of samples inside the real images' k-NN manifold (fidelity); higher is "
                        "better, up to its floor"),
    "recall": _score("recall", "share of real images inside the samples' k-NN manifold (diversity); higher is better"),
    "density": _score("density", "real neighbourhoods each sample falls in, on average (fidelity); about 1 for real "
                      "data, well below 1 means off the real manifold"),
    "coverage": _score("coverage", "share of real images with a sample among their nearest neighbours (diversity); "
                       "higher is better"),
    "vendi_score": _score("Vendi score", "effective number of distinct samples (Friedman & Dieng 2023); higher is more "
                          "diverse, 1 = all alike"),
    "modes_hit": _score("classes covered", "classes holding at least 1% of the samples, by the judging classifier; "
                        "higher is better, up to the real images' count"),
    "modes_hit_real": _score("classes covered by real images", "classes holding at least 1% of the real reference "
                             "images: the most 'classes covered' can reach"),
    "mode_kl_fake_real": _score("class KL(samples ‖ real)", "KL divergence of the samples' class histogram from the "
                                "real one: too many samples in rare classes; lower is better"),
    "mode_kl_real_fake": _score("class KL(real ‖ samples)", "KL divergence of the real class histogram from the "
                                "samples': classes the samples miss (mode dropping); lower is better"),
    "mode_max_fraction": _score("largest class share", "share of samples in their most common class; 1 = collapse onto "
                                "one class, about 1/classes is balanced"),
    "memo_nn_ratio": _score("nearest-train distance ratio", "median distance of samples to their nearest training image "
                            "over that of held-out real images; 1 = no copying, well below 1 = memorization"),
    "memo_mannwhitney_p": _score("copying test p-value", "Mann-Whitney p that samples lie closer to the training set "
                                 "than held-out images do; below 0.01 flags copying"),
    "memo_copy_fraction": _score("near-copy share", "share of samples closer to a training image than 99% of held-out "
                                 "images are; 0.01 is chance, higher flags copies"),
    "memo_ct": _score("C_T data-copying statistic", "Meehan et al. 2020 Z-score over training-set cells; near 0 is "
                      "healthy, strongly negative = copying, positive = underfitting"),
    "memo_ct_cells": _setting("C_T cells used", "training-set k-means cells with enough samples to enter C_T; more "
                              "cells, a more reliable C_T"),
    "memo_authentic_fraction": _score("authentic share", "share of samples farther from their nearest training image "
                                      "than it is from its own neighbour (Alaa et al. 2022); higher is better"),
    "memo_authentic_fraction_heldout": _score("authentic share of held-out images", "the same share for real images "
                                              "the model never saw: the level 'authentic share' should reach"),
    "n_fake": _setting("samples scored", "generated images scored; every score depends on it, so compare runs at equal n"),
    "n_real": _setting("real images", "held-out real images the samples are compared with"),
    "n_train_reference": _setting("training images", "training images behind the memorization tests and the floor"),
    "n": _setting("images", "test images scored"),
    "interval_level": _setting("interval level", "confidence level of every [low, high] interval (0.95 = 95%)"),
    "interval_resamples": _setting("bootstrap resamples", "resamples behind each interval"),
    "seconds": _setting("evaluation time", "wall-clock seconds the evaluation took"),
    "heldout_is_unseen": _setting("held-out images unseen", "1 when the reference is a split the model never trained "
                                  "on; 0: memorization scores and floor are not measurable"),
    "feature_network": _setting("feature network", "the network whose features every distance is measured in"),
    "classifier": _setting("judging classifier", "the classifier that labels samples for the class scores"),
    "reference": _setting("real reference", "the real images the samples are compared with"),
    "reference_note": _setting("note on the reference", "why some scores could not be measured"),
    "not_measurable": _setting("not measurable", "scores left out because no held-out real images were given"),
    # eval cyclegan (darkroom.metrics.translation)
    "translation_target_accuracy": _score("translation accuracy", "share of translated images the judging "
                                          "classifier assigns to the target class; higher is better"),
    "translation_fid": _score("translation FID", "FID of translated images vs real images of the target domain; "
                              "lower is better"),
    "translation_cycle_l1": _score("cycle error", "mean |x − F(G(x))| after translating there and back, pixels on "
                                   "[-1, 1]; lower is better, 0 = perfect"),
    # classifier training and darkroom eval classifier
    "train_loss": _score("training loss", "mean cross-entropy on the epoch's (augmented) training batches; lower is better"),
    "test_loss": _score("test loss", "mean cross-entropy on the test split; lower is better"),
    "test_acc": _score("test accuracy", "share of test images classified correctly; higher is better, chance is "
                       "1/classes"),
    "train_size": _setting("training image size", "pixels per side trained at (progressive resizing)"),
    # GAN training
    "critic_loss": _score("critic loss", "critic's loss without the penalty (WGAN: E[D(fake)] − E[D(real)]); "
                          "more negative = the critic tells samples from real images more easily"),
    "generator_loss": _score("generator loss", "generator's loss, −E[D(G(z))] or non-saturating BCE; moves with the "
                             "critic, not comparable across runs"),
    "wasserstein": _score("Wasserstein estimate", "critic's E[D(real)] − E[D(fake)]; falling over training = samples "
                          "closer to real (WGAN, WGAN-GP)"),
    "gp": _score("gradient penalty", "WGAN-GP's (‖∇D‖ − 1)² at interpolates; small = the critic stays 1-Lipschitz"),
    "grad_norm": _score("critic gradient norm", "mean ‖∇D‖ at interpolates; WGAN-GP pushes it towards 1"),
    "toy_modes_captured": _score("modes captured", "mixture modes with a sample within 3 std of the centre (VEEGAN); "
                                 "higher is better, up to the number of modes"),
    "toy_n_modes": _setting("modes in the mixture", "Gaussian modes of the toy distribution"),
    "toy_high_quality_fraction": _score("high-quality share", "share of samples within 3 std of a mode centre; higher "
                                        "is better"),
    "toy_mode_kl_uniform": _score("mode KL to uniform", "KL of the samples' mode histogram to uniform; 0 = balanced, "
                                  "log(modes) = collapse"),
    "toy_modes_20": _score("modes with 20+ good samples", "modes holding at least 20 high-quality samples (of 2,500: a "
                           "fifth of a fair share on the grid); a stray sample cannot inflate it; higher is better"),
    "toy_reverse_kl": _score("reverse KL (PacGAN)", "KL of the high-quality samples' mode histogram to uniform, "
                             "PacGAN's Table 1 column; 0 = balanced, log(modes) = collapse"),
    # CycleGAN training (cyclegan/losses.py LOSS_TERMS, cyclegan/records.py)
    "gan_ab": _score("adversarial loss A→B", "LSGAN loss of G_AB against D_B; lower = its B images fool D_B more"),
    "gan_ba": _score("adversarial loss B→A", "LSGAN loss of G_BA against D_A; lower = its A images fool D_A more"),
    "cycle": _score("cycle loss", "λ-weighted |F(G(x)) − x| on training images; lower is better"),
    "idt": _score("identity loss", "weighted |G(y) − y| for images already in the target domain; 0 when off"),
    "val_cycle": _score("held-out cycle error", "mean |F(G(x)) − x| on held-out images, pixels on [-1, 1]; lower is better"),
    "lambda": _setting("cycle weight λ", "the cycle loss weight this step used: --lambda-a/-b, or where --cycle-target "
                       "moved it"),
    "d": _score("discriminator loss", "LSGAN loss of the domain's discriminator; near 0.25-0.5 is a balanced game"),
    "g": _score("generator total loss", "sum of both generators' adversarial, cycle and identity terms; lower is better"),
    "held_out": _setting("validation images held out", "true when the validation images are not training images"),
    # clocks, positions and counters of every trainer
    "epoch": _setting("epoch", "passes over the training set so far (fractional for CycleGAN)"),
    "step": _setting("step", "optimizer steps so far"),
    "iteration": _setting("generator iteration", "generator updates so far"),
    "critic_iterations": _setting("critic steps", "critic (discriminator) updates so far"),
    "lr": _setting("learning rate", "learning rate at this step (from the schedule)"),
    "train_time": _setting("training time", "seconds spent in training steps (evaluation and set-up excluded)"),
    "elapsed": _setting("elapsed time", "wall-clock seconds since the run (or its resume) started"),
    "images_per_s": _setting("images per second", "training throughput"),
    "it_per_s": _setting("iterations per second", "generator iterations per second"),
    "critic_steps_per_s": _setting("critic steps per second", "critic updates per second"),
    "skipped_steps": _setting("skipped steps", "steps skipped for a non-finite loss (--on-nan skip, fp16 overflow); "
                              "0 is healthy"),
    "bad_images": _setting("unreadable images skipped", "training files that could not be decoded (--on-bad-image skip)"),
    "skipped_images": _setting("unreadable images skipped", "training files that could not be decoded (--on-bad-image skip)"),
}
DOMAIN_BASES = ("cycle", "idt", "val_cycle", "d", "lambda")  # `<base>_a` / `<base>_b`: the term of domain A or B
DIRECTIONS = {"a2b": "A→B", "b2a": "B→A"}


def describe(key: str) -> Term:
    """The readable name and meaning of a metric key; unknown keys come back under their own name, known=False."""
    for end, side in (("_ci_low", "lower"), ("_ci_high", "upper")):
        if key.endswith(end):
            base = describe(key[:-len(end)])
            return Term(f"{base.name}: 95% interval, {side} end", f"{side} end of the 95% interval of {base.name}",
                        False, base.known)
    if key.endswith("_floor"):
        base = describe(key[:-len("_floor")])
        return Term(f"{base.name}: floor (real vs real)", FLOOR, base.score, base.known)
    match = re.fullmatch(r"(.+)_(a2b|b2a)", key)
    if match:
        base = describe(match[1])
        return Term(f"{base.name}, {DIRECTIONS[match[2]]}", f"{base.meaning} (translating {DIRECTIONS[match[2]]})",
                    base.score, base.known)
    match = re.fullmatch(r"(.+)_([ab])", key)
    if match and match[1] in DOMAIN_BASES:
        name, meaning, score = TERMS[match[1]]
        return Term(f"{name}, domain {match[2].upper()}", f"{meaning} (domain {match[2].upper()})", score)
    if key.startswith("acc_"):
        return Term(f"accuracy on {key[4:]}", f"share of test images of class {key[4:]} classified correctly; "
                    "higher is better")
    if key in TERMS:
        name, meaning, score = TERMS[key]
        return Term(name, meaning, score)
    return Term(key, "", True, known=False)
