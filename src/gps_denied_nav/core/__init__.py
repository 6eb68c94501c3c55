"""ROS-free algorithms of gps_denied_nav (numpy, torch, faiss, OpenCV only)."""
