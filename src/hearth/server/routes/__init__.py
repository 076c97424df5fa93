"""Thin HTTP routes: validate the wire model, call the domain, render the answer."""
