"""What every process of the appliance shares: the bus, the frame ring, stores, settings, logs and paths."""
