"""2-D toy data for the GAN trainer (`--data toy:ring8`, `toy:grid25`): WGAN-GP's toy experiments
(arXiv:1704.00028 sec. 5.1) with the MLP nets of darkroom.nets.toy; samples drawn as a scatter plot."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from darkroom.errors import UserError
from darkroom.metrics import modes
from darkroom.nets.toy import mlp_critic, mlp_generator

TOY_SETS = {"ring8": "ring", "grid25": "grid"}  # --data toy:NAME -> darkroom.metrics.modes toy name
HIDDEN = 256  # WGAN-GP's toy nets used 512; 256 trains the same modes in half the time on a CPU


def is_toy(spec: str) -> bool:
    return spec.startswith("toy:")


def toy_name(spec: str) -> str:
    name = spec.removeprefix("toy:")
    if name not in TOY_SETS:
        raise UserError(f"--data {spec} is not a toy set; use toy:ring8 or toy:grid25")
    return TOY_SETS[name]


def build_nets(nz: int, hidden: int = HIDDEN) -> tuple[nn.Module, nn.Module]:
    return mlp_generator(nz=nz, hidden=hidden), mlp_critic(hidden=hidden)


def sample(name: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """n points (n, 2) of the toy distribution `name` (ring or grid)."""
    return modes.sample_toy(name, n, generator=generator)


def coverage(points: torch.Tensor, spec: str) -> dict[str, float]:
    """VEEGAN's toy counts for generated points (n, 2): modes captured, high-quality fraction, KL to uniform."""
    centers, std = modes.TOYS[toy_name(spec)]()
    return modes.toy_mode_coverage(points, centers, std)


class ToyBatches:
    """Fresh toy points every step (the distribution is known, so no dataset and no epochs)."""

    kind = "toy"
    channels = 0
    skipped = 0

    def __init__(self, spec: str, batch_size: int, rank: int, world_size: int, seed: int, device: torch.device) -> None:
        self.name = toy_name(spec)
        self.source = spec
        self.batch_size, self.rank, self.world_size, self.device = batch_size, rank, world_size, device
        self.generator = torch.Generator(device=device).manual_seed(seed)  # drawn on the device: no copy per step
        centers, self.std = modes.TOYS[self.name]()
        self.dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.centers = torch.from_numpy(centers).to(device, self.dtype)  # (modes, 2)

    def __len__(self) -> int:
        return 0  # unbounded

    def next_batch(self) -> torch.Tensor:
        """This rank's slice of the global batch (B, 2): modes.sample_toy's draws, made on the device."""
        b, device = self.batch_size, self.generator.device
        mode = torch.randint(len(self.centers), (b,), generator=self.generator, device=device)
        noise = torch.randn(b, 2, generator=self.generator, dtype=self.dtype, device=device)
        points = (self.centers[mode] + self.std * noise).float()
        per_rank = b // self.world_size
        return points[self.rank * per_rank:(self.rank + 1) * per_rank]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def save_scatter(points: torch.Tensor, spec: str, path: Path) -> Path:
    """Generated points (blue) under 1,000 real ones (red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = sample(toy_name(spec), 1000, torch.Generator().manual_seed(0))
    figure, axes = plt.subplots(figsize=(4, 4), dpi=100)
    axes.scatter(points[:, 0], points[:, 1], s=3, c="tab:blue", alpha=0.5, label="samples")
    axes.scatter(real[:, 0], real[:, 1], s=1, c="tab:red", label="data")
    axes.set_aspect("equal")
    axes.legend(loc="upper right", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
