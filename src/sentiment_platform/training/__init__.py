"""Training and evaluation of the embedded model (torch is needed only by `train`)."""
