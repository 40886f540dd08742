"""darkroom eval: generative runs and image folders scored with darkroom.metrics, floors beside every number."""
