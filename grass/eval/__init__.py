"""Task evaluation: the paper's protocol (:mod:`~grass.eval.protocol`, greedy generation and answer
extraction) and the lm-eval bridge (:mod:`~grass.eval.lmeval`, log-likelihood scoring)."""
