"""The shipped tuning profiles (TOML), installed as package data of `halotune.profiles`.

No code: this file only makes the directory a package so importlib.resources can find the
profiles in an installed halotune. See README.md here for the format and
halotune/tuning/loader.py for how they are found and resolved.
"""
