"""Networks (MONAI first), the weights store with hash check, and device/precision selection."""
