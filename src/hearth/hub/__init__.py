"""Getting model files onto this machine: bundled packages now, hub downloads later."""
