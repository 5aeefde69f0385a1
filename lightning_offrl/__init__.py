"""lightning_offrl: diffusion-based offline reinforcement learning on PyTorch Lightning."""

import warnings

# Lightning 2.6 + torch 2.13 emit this from Lightning's own internals on every batch transfer.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# During fit the DataModule's validation loader is an empty list by design (the evaluation callback
# scores the policy in the environment every `interval` updates), which Lightning reports on every fit.
# Only that list is meant: an empty DataLoader of a user's own still warns.
warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero")

__version__ = "0.1.0"
