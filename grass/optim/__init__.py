"""Optimizers shared by all methods: the plain AdamW builder (:mod:`~grass.optim.adamw`) and the
layer-wise offload AdamW of LISA and GRASS (:mod:`~grass.optim.offload`, its state storage in
:mod:`~grass.optim.offload_state`, its copy pipeline in :mod:`~grass.optim.offload_staging`)."""
