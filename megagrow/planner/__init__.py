"""``megagrow plan tune``: pick a growth schedule for a budget from short probes.

The recipe it searches is one growth in the stable phase of a warmup-stable-decay (WSD) schedule (Bu et al.
2025): a small model trained from step 0, grown once at step ``g``, then the full model to the end. Under WSD
the LR before the final decay does not depend on where the growth is or when the run ends, so every
candidate's first ``g + lag`` steps are exactly the first steps of its full run, and candidates that share a
small model share its training up to their growth points: one *prefix run* per small model (and LR),
*forked* at each candidate growth point (a resume with the growth moved there, which megagrow honours
exactly) and trained ``lag`` steps past it.

A candidate is scored by its *lead*: the FLOPs scratch (the same config with no growth, the same schedule)
needs beyond the probe's FLOPs to reach the probe's validation loss ``lag`` steps after the growth, not at
it (landscape-aware growing, Wang et al. 2024: the loss right at growth misleads, a few hundred steps later
it predicts). The pick is the largest lead; the run it writes decays early enough to cash most of it.

Modules: :mod:`.curves` (loss-vs-FLOPs arithmetic), :mod:`.probes` (candidates and the probe schedule),
:mod:`.choice` (the pick and the budget it decays at) are pure; :mod:`.tune` trains the probes;
:mod:`.report` writes ``probes.json``, ``report.md`` and the plot.
"""
