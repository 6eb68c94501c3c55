"""The flight data recorder: rotating MCAP recordings, and the salvage of a split cut short by a crash."""
