"""`python -m server.train_round`: one round of rStar-Math self-evolution, end to end.

generate (MCTS over training problems with their gold answers, or the GSM8K bootstrap in round
0) → extract (SFT trajectories, PPM preference pairs) → sft (the new policy) → ppm (a PPM
initialised from it) → eval (new against previous on a held-out set), recorded in
OUT/manifest.json. The phases live in `training/` (one module each); `--help` lists every
flag, `--config round.json` (or .toml) sets any of them from a file.
"""

from __future__ import annotations

import sys

from training.round import main

if __name__ == "__main__":
    sys.exit(main())
