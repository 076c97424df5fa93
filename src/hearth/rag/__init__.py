"""Knowledge bases: parse, split, embed, store, retrieve and answer with citations."""
