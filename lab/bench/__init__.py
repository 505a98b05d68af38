"""Benchmarks (`mitmlab bench ...`): speed goals are measured here, as ratios to a reference run in the
same process, never asserted in timed tests. Results are written up in docs/benchmarks.md."""
