"""Fine-tuning: training data formats, the one chat template, LoRA runs and adapter files."""
