"""Full fine-tuning: AdamW on every parameter."""
