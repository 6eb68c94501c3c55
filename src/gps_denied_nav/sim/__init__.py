"""ROS-free demo world and flight simulation: procedural orthophoto (``world``), camera frames of any map
raster (``render``), survey trajectory with exact kinematics (``trajectory``), sensor models (``imu_model``),
the whole flight (``flight``), its MCAP clip (``clip``) and real tile sets as GeoTIFFs (``import_tiles``)."""
from __future__ import annotations
