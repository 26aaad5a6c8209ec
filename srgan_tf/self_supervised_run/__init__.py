"""`srgan-tf self-supervised` (entry level: it joins data, training, inference and evaluation).

- `plan`: the options, and what is decided about a volume before training (acquisition,
  slice profile, training config, the recipe a model depends on);
- `model`: the model of a plan, reused or trained on the volume's own slices;
- `command`: the whole command on one volume (the cohort form is `cohort.runs`).

Import from those modules directly.
"""
