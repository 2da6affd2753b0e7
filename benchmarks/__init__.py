"""Speed measurements of bopsweep, each reported as a ratio against a baseline timed in the
same run (the machine is shared and noisy: absolute seconds mean little, ratios travel)."""
