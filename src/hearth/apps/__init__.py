"""Apps: one business scenario × one model = one prompt, as a YAML file.

An app names its prompt templates per model (variants), the variables they take, an
optional knowledge base, sensitive-word moderation and a JSON output schema. The server
serves each app as a virtual model id on ``/v1/chat/completions``.
"""
