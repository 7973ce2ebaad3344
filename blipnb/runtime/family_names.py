"""The captioner families' names: one module of blipnb.runtime.families each, its constant the name in capitals.
Apart from that package, so that naming them (config does) imports no torch."""

NAMES = ("blip", "git", "blip2", "florence2", "paligemma", "smolvlm")
