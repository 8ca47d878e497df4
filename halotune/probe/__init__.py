"""The llama.cpp probe: synthetic GGUF models, GGUF headers, llama-bench output, statistics, runner."""
