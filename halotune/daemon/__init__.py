"""The halotune daemon: sampling loop, local API, rules, exporter."""
