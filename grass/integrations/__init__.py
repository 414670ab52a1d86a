"""Drop-ins for other training stacks: :mod:`grass.integrations.hf` runs LISA and GRASS inside a
``transformers.Trainer`` (and so TRL's ``SFTTrainer``) with the method objects of ``grass train``."""
