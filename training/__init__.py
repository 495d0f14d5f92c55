"""Self-evolution's training side: turning searched trees into the next round's models."""
