"""Memory for conversations: which remembered turns go into a prompt, counted with the
serving model's own tokenizer, and the threads (conversations, response chains) they come
from."""
