"""Messages that cross service boundaries: the envelope, commands, events and outcomes."""
