"""blipnb: fine-tune and honestly evaluate BLIP image captioning; the notebooks' helper package."""
from .version import __version__

__all__ = ["__version__"]
