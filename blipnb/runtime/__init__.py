"""The captioning runtime, standing alone: images, decoding, consensus, the captioner and the hosts' entry points.

It imports only the standard library, torch, transformers, Pillow and numpy, and its modules import each other
relatively, so blipnb's export copies this folder as it is (`blipnb_runtime/`) and a deployed model runs where
blipnb is not installed. blipnb builds on it: nothing here is copied by hand. Importing the package imports none of
its modules, so `blipnb.runtime.images` stays free of torch.
"""
