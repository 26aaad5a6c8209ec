"""A study in, a study out: the cohort forms of `srgan-tf self-supervised` and `srgan-tf infer`.

- `parts`: which share of the volumes this process takes (flags, SLURM array, Kubernetes
  Indexed Job);
- `ledger`: per-volume claims and records in the work folder, `cohort.csv`;
- `protocols`: volumes of one acquisition grouped to share one trained model;
- `runs`: the two commands over a folder.
"""
