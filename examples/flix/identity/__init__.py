"""identity: who a visitor is. A real service over the store, and a fake driver of 20 people."""
