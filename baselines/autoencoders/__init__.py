"""Baseline autoencoders: Music2Latent's network trained with other objectives.

Same encoder, latent rate and dimension, decoder pyramid and UNet as Music2Latent, on the same
front end and the same training budget, so a comparison isolates what consistency training buys
(see ``docs/baselines.md``):

- :mod:`~baselines.autoencoders.spectral_ae`: plain spectral AE, regression loss (codec ``spectral_ae``).
- :mod:`~baselines.autoencoders.vae`: Gaussian posterior + beta-KL (codec ``vae``).
- :mod:`~baselines.autoencoders.diffusion_ae`: EDM denoiser decoder (codec ``diffusion_ae``).
- :mod:`~baselines.autoencoders.common`: deterministic decoder, regression losses, checkpoint
  loading and the shared codec class.
- :mod:`~baselines.autoencoders.recipes`: their training tasks and presets for the generic
  trainer (``python -m benchmark train --codec spectral_ae --preset cpu``).

Modules are imported by path from the codec and training registries; this package imports
nothing on its own.
"""
