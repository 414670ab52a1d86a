"""LoRA and DoRA through HF PEFT (DoRA = LoRA with use_dora=True)."""
