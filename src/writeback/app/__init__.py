"""The application: the engine (one reconcile pass), the service loop, and the wiring of real adapters."""
