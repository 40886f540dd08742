"""One WGAN-GP critic step and one generator step, the way darkroom.gan.train runs them, on a fixed union batch.

    python tests/scripts/gan_ddp_step.py OUT.pt                                   # one process, whole batch
    python -m torch.distributed.run --nproc_per_node=2 tests/scripts/gan_ddp_step.py OUT.pt   # two ranks, half each
Rank 0 saves the critic's and the generator's gradients to OUT.pt.
"""
import sys

import torch
from torch import nn

from darkroom import dist
from darkroom.nets import dcgan
from darkroom.gan.losses import critic_objective, generator_objective

BATCH, SIZE, NZ = 8, 16, 8


def main(out: str) -> None:
    torch.set_num_threads(1)
    info = dist.setup("cpu")
    torch.manual_seed(0)  # identical initial nets on every rank (DDP also broadcasts rank 0's)
    # no BatchNorm anywhere: per-rank batch statistics would (rightly) differ from the union batch's
    spec = dcgan.DCGANSpec(nz=NZ, ngf=4, ndf=4, n_extra_layers=1, critic_norm="layer", generator_norm="none")
    G, D = dcgan.build_generator(spec, SIZE, 1), dcgan.build_critic(spec, SIZE, 1)
    data = torch.Generator().manual_seed(1)
    real = torch.rand(BATCH, 1, SIZE, SIZE, generator=data) * 2 - 1  # the union batch
    z = torch.randn(BATCH, NZ, generator=data)
    alpha = torch.rand(BATCH, generator=data)
    z_g = torch.randn(BATCH, NZ, generator=data)
    per_rank = BATCH // info.world_size
    mine = slice(info.rank * per_rank, (info.rank + 1) * per_rank)
    g_net = nn.parallel.DistributedDataParallel(G) if info.distributed else G
    d_net = nn.parallel.DistributedDataParallel(D) if info.distributed else D

    with torch.no_grad():
        fake = G(z[mine])
    objective, _ = critic_objective(d_net, real[mine], fake, "wgan-gp", 10.0, "fp32", 1.0, alpha[mine])
    objective.backward()
    critic_grads = [p.grad.clone() for p in D.parameters()]

    objective = generator_objective(D, g_net(z_g[mine]), "wgan-gp")
    objective.backward(inputs=list(G.parameters()))
    generator_grads = [p.grad.clone() for p in G.parameters()]
    if info.is_main:
        torch.save({"critic": critic_grads, "generator": generator_grads, "world_size": info.world_size}, out)
    del g_net, d_net  # the DDP wrappers, before dist.cleanup
    dist.cleanup()


if __name__ == "__main__":
    main(sys.argv[1])
