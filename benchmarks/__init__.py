"""darkroom's side-by-side benchmarks: CPU (`make bench`) and GPU (`make bench-gpu`); see benchmarks/README.md."""
