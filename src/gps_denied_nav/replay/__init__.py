"""Running the graph on recorded flight clips: bag player, output recorder, in-process graph host."""
