# src/models/vae: the SD3 16-channel VAE (encoder, decoder, tiled decode, latent format).
list(APPEND SD35_ENGINE_SOURCES
  src/models/vae/vae.cpp
  src/models/vae/vae_blocks.cpp
  src/models/vae/vae_tiled.cpp
)
