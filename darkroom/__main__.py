"""`python -m darkroom` and `torchrun -m darkroom`: the same command line as the `darkroom` script."""
from darkroom.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
