"""The generic trainer: a task turns clean patches into (input, target) pairs; everything else is shared."""
