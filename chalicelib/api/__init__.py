"""HTTP and event handlers: one blueprint per surface, each route a few lines."""
