"""Token counting, inspection, comparison and training, over any tokenizer source.

Heavy libraries (tiktoken, tokenizers, sentencepiece, matplotlib, llama.cpp) are imported
inside the functions that need them, so importing this package stays cheap.
"""

from hearth.tokens.base import Tokenizer
from hearth.tokens.describe import TokenInfo, describe
from hearth.tokens.load import open_tokenizer

__all__ = ["TokenInfo", "Tokenizer", "describe", "open_tokenizer"]
