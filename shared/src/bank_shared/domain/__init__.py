"""Pure domain logic: decide(command, state) -> events | rejection; evolve(state, event)."""
