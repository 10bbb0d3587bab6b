"""The DreamOmni trainer's data side: per-task VLM conditioning, the frozen encoders (Qwen2-VL, FLUX VAE),
feature precompute and the streaming loader. `train.conditioning` says what the VLM sees per task,
`train.encoders` turns it into features, `train.tiny` builds tiny random encoders for tests and benches."""
