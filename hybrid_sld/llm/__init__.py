"""The LLM proposer: law + fitter proposals from any OpenAI-compatible endpoint."""
