"""The domain of the control room: models, services (actions), runtime and admin."""
