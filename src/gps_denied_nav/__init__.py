"""GNSS-denied UAV navigation: visual geo-localisation against a tile corpus, fused with IMU in an ESKF."""
