"""Every Qt line of picker-gui lives in this package."""
