"""ROS-free map acquisition: web-mercator tiles of an area from a tile server the user names (``xyz``,
``wmts``), fetched through a resumable, rate-limited local cache (``fetch``), mosaicked into a Cloud
Optimized GeoTIFF (``mosaic``), terrain tiles decoded into a DEM in metres (``dem``), and the record of where
it all came from (``record``). ``gps_denied_nav.cli_maps`` is the ``gdn fetch-map``/``fetch-dem`` front end."""
