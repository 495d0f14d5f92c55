"""Running step code: the nsjail backend (issue 3) and the explicit unsafe local backend."""
