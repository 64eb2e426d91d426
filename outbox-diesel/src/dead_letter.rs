//! Dead-letter topics: the headers a dead-lettered record carries, and replay.
