"""Self-evolution rounds (`python -m server.train_round`): configuration (`config`), input
checks (`inputs`), the manifest and atomic files (`manifest`), engines (`engines`), and one
module per phase: `generate`, `extract`, `train` (sft and ppm), `evaluate`; `run` ties them
together."""
