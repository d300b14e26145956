# VAE goldens (tiny-a), bf16 vs f32, tiled vs untiled, latent format, bad inputs.
sd35_add_test(test_vae LABEL model SOURCES tests/models/test_vae.cpp)
