"""The command groups of iothub-service, one module per noun."""
