"""The numpy/torch core of picker-gui. Nothing in this package imports Qt."""
