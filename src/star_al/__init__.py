"""star-al: active learning around LoRA fine-tuning of LLMs (STAR and its baselines)."""

__version__ = "0.1.0"
