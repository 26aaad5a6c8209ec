"""Table 1 of Sood & Rusu, reproduced (an entry-level orchestrator beside `experiment.py`:
it trains one run per column through `run_experiment`).

`plan` decides the sub-runs and their configs, `reproduce` trains or reuses them and collects
their numbers, `report` writes table1.md, table1.json and the figures. Import from those
modules directly.
"""
