"""Music2Latent (Pasini, Lattner & Fazekas, ISMIR 2024), re-implemented from published facts.

Modules: ``config`` (hyper-parameters, presets ``paper``/``cpu``/``smoke``), ``frontend``
(waveform <-> compressed complex STFT), ``layers`` and ``model`` (encoder, decoder pyramid,
consistency UNet), ``inference`` (chunked encode / consistency-sampling decode),
``convert`` (released checkpoint -> our module tree), ``codec`` (benchmark codecs
``music2latent`` and ``music2latent_official``), ``consistency`` (training loss).
"""
