"""The model layer: loading BLIP (hub, local, tiny from scratch), the SDPA patch, collation, precision, and
generation from pixels only. It knows data's images and the config; it never scores or trains."""
