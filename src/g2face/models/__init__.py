"""G2Face networks (L2). Modules: `config` (torch-free configurations), `generator_api`,
`stylegan2`, `dpim`, `gie`, `extractor`, `g2face` (G2FaceNet), `checkpoints`, and `discriminator`
(training only; deliberately not imported here)."""
